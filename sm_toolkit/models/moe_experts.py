"""Expert feed-forward networks: a stack of E MLP or SwiGLU experts, and the dense FFN.

Legend for tensor names (suffix = shape):
    S token rows sorted by expert (segment e holds counts[e] rows)
    D model width
    H hidden width of one expert (d_ff)
    E experts held by this module
    C capacity (rows per expert in a padded buffer)

Weights are stored stacked, w1_EDH and w2_EHD (and w3_EDH, the "up" projection of a
SwiGLU expert: silu(x w1) * (x w3) w2, as in Mixtral / DeepSeek / Qwen-MoE), so the
state_dict layout does not depend on how experts are split across processes
(`moe_parallel.py` slices the stack).

Two ways to run the ragged segments, same numbers (bitwise equal on CPU on torch's matmul
engine, tested; on oneDNN, `cpu_matmul`, the loop rounds its own way, within fp32):
`loop`, one matmul per expert, and `grouped`, one `torch.nn.functional.grouped_mm` per
weight over all segments (offsets = cumulative counts; the kernel torchtitan's MoE uses).
`auto` times both once per device and shape on first use and keeps the faster
(`choose_compute`); which one wins depends on the machine and its load.

Why the ragged path unbinds the stack once per call instead of indexing `w1_EDH[e]` in the
loop: the backward of each `W[e]` writes a zero-filled full-size [E, D, H] gradient, i.e.
O(E^2 D H) memory traffic (measured ~4x slower than a dense FFN at E = 32). The backward of
one `unbind` is one `stack`. Experts that receive zero rows run a [0, D] matmul, which is
valid and contributes a zero gradient.
"""

from __future__ import annotations

import copy
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from sm_toolkit.errors import ConfigError
from sm_toolkit.models import moe_loop
from sm_toolkit.models.activations import make_activation
from sm_toolkit.models.cpu_matmul import Linear

EXPERT_KINDS = ("mlp", "swiglu")
EXPERT_COMPUTES = ("auto", "loop", "grouped")
_WEIGHTS = ("w1_EDH", "w2_EHD", "w3_EDH")


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward hands on a contiguous gradient: grouped_mm's backward
    rejects the zero-stride gradient that e.g. `y.sum().backward()` produces."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return grad.contiguous()


class GroupedExperts(nn.Module):
    """E independent experts over expert-sorted rows: `mlp` x -> act(x w1_e) w2_e, or
    `swiglu` x -> (silu(x w1_e) * (x w3_e)) w2_e.

    Every parameter here is an expert parameter (`is_expert = True` on each), which lets the
    model put them in their own optimizer group and keep them out of data-parallel
    all-reduce under expert parallelism.
    """

    def __init__(
        self, *, n_experts: int, d_model: int, d_ff: int, activation: str, out_std: float,
        kind: str = "mlp", compute: str = "auto",
    ) -> None:  # fmt: skip
        super().__init__()
        if kind not in EXPERT_KINDS:
            raise ConfigError("expert_kind", kind, f"one of {', '.join(EXPERT_KINDS)}")
        if compute not in EXPERT_COMPUTES:
            raise ConfigError("expert_compute", compute, f"one of {', '.join(EXPERT_COMPUTES)}")
        if compute == "grouped" and not grouped_aligned(d_model, d_ff):
            raise ConfigError(
                "expert_compute", compute,
                "'loop' or 'auto' unless d_model and d_ff are multiples of 8 (grouped_mm "
                "needs 16-byte strides, bf16 included)",
            )  # fmt: skip
        self.n_experts, self.kind, self.compute = n_experts, kind, compute
        self.w1_EDH = nn.Parameter(torch.empty(n_experts, d_model, d_ff))
        self.w2_EHD = nn.Parameter(torch.empty(n_experts, d_ff, d_model))
        nn.init.normal_(self.w1_EDH, std=0.02)
        nn.init.normal_(self.w2_EHD, std=out_std)
        if kind == "swiglu":
            self.w3_EDH = nn.Parameter(torch.empty(n_experts, d_model, d_ff))
            nn.init.normal_(self.w3_EDH, std=0.02)
        for p in self.parameters():
            p.is_expert = True  # type: ignore[attr-defined]
        self.act = make_activation(activation) if kind == "mlp" else nn.SiLU()

    def _hidden(self, up: torch.Tensor, gate: torch.Tensor | None) -> torch.Tensor:
        return self.act(up) if gate is None else self.act(up) * gate

    def forward(self, x_SD: torch.Tensor, counts: list[int]) -> torch.Tensor:
        """Ragged path: rows sorted by expert, `counts[e]` rows for expert e (sum = S)."""
        assert len(counts) == self.n_experts and sum(counts) == x_SD.shape[0]
        if self.resolved_compute(x_SD.shape[0], x_SD.device) == "grouped":
            return self.forward_grouped(x_SD, counts)
        return self.forward_loop(x_SD, counts)

    def resolved_compute(self, n_rows: int, device: torch.device) -> str:
        """`loop` or `grouped` for a call of `n_rows` rows (`auto`: timed once, cached)."""
        if self.compute != "auto":
            return self.compute
        if device.type == "cpu":
            # Measured (benchmarks/moe_layer.py, 4 runs x 8 and 32 experts, 1 thread): the
            # fused loop beat grouped_mm's CPU fallback (the same per-group matmuls plus its
            # own overhead) in 7 of 8 paired comparisons, while a probe under a neighbour's
            # load picked grouped in 3 of 4 runs. Elsewhere the probe decides.
            return "loop"
        _, d, h = self.w1_EDH.shape
        return choose_compute(self, n_rows, device) if grouped_aligned(d, h) else "loop"

    def forward_loop(self, x_SD: torch.Tensor, counts: list[int]) -> torch.Tensor:
        """One matmul per expert on its segment (`moe_loop.LoopExperts` where it applies)."""
        w3 = self.w3_EDH if self.kind == "swiglu" else None
        weights = [self.w1_EDH, self.w2_EHD] + ([w3] if w3 is not None else [])
        if moe_loop.supports(self.act, x_SD, weights):
            workers = moe_loop.expert_threads(x_SD, counts, weights)
            return moe_loop.LoopExperts.apply(
                x_SD, counts, self.act, self.w1_EDH, self.w2_EHD, w3, workers
            )
        return self.forward_autograd_loop(x_SD, counts)

    def forward_autograd_loop(self, x_SD: torch.Tensor, counts: list[int]) -> torch.Tensor:
        """The loop written through autograd (any activation, autocast, DTensor weights)."""
        w1s, w2s = self.w1_EDH.unbind(0), self.w2_EHD.unbind(0)
        w3s = self.w3_EDH.unbind(0) if self.kind == "swiglu" else None
        outs = []
        for e, x_segD in enumerate(torch.split(x_SD, counts)):
            gate = x_segD @ w3s[e] if w3s is not None else None
            outs.append(self._hidden(x_segD @ w1s[e], gate) @ w2s[e])
        return torch.cat(outs, dim=0)

    def forward_grouped(self, x_SD: torch.Tensor, counts: list[int] | torch.Tensor) -> torch.Tensor:
        """One grouped GEMM per weight over all segments (offsets: cumulative counts).

        `counts` may be a device tensor (no host sync). Rows after the counted ones (a
        device plan's dropped rows) join the last segment, so every row of the output and of
        the input gradient is computed; the caller masks what it does not keep."""
        if not isinstance(counts, torch.Tensor):
            counts = torch.tensor(counts, device=x_SD.device)
        offs_E = counts.cumsum(0).to(torch.int32)
        offs_E[-1] = x_SD.shape[0]
        x_SD = _ContiguousGrad.apply(x_SD)
        up_SH = F.grouped_mm(x_SD, self.w1_EDH, offs=offs_E)
        gate = F.grouped_mm(x_SD, self.w3_EDH, offs=offs_E) if self.kind == "swiglu" else None
        h_SH = _ContiguousGrad.apply(self._hidden(up_SH, gate))
        return _ContiguousGrad.apply(F.grouped_mm(h_SH, self.w2_EHD, offs=offs_E))

    def forward_padded(self, x_ECD: torch.Tensor) -> torch.Tensor:
        """Capacity-padded path: one batched matmul per layer over [E, C, D] buffers."""
        gate = torch.bmm(x_ECD, self.w3_EDH) if self.kind == "swiglu" else None
        return torch.bmm(self._hidden(torch.bmm(x_ECD, self.w1_EDH), gate), self.w2_EHD)

    def slice(self, start: int, stop: int) -> GroupedExperts:
        """A new module holding copies of experts start..stop-1 (for expert parallelism)."""
        part = copy.deepcopy(self)
        part.n_experts = stop - start
        for name in _WEIGHTS:
            if hasattr(self, name):
                setattr(part, name, nn.Parameter(getattr(self, name).detach()[start:stop].clone()))
        for p in part.parameters():
            p.is_expert = True  # type: ignore[attr-defined]
        return part

    def extra_repr(self) -> str:
        e, d, h = self.w1_EDH.shape
        return f"n_experts={e}, d_model={d}, d_ff={h}, kind={self.kind}, compute={self.compute}"


_CHOICE: dict[tuple, str] = {}


def grouped_aligned(d_model: int, d_ff: int) -> bool:
    """grouped_mm needs row strides that are multiples of 16 bytes (8 bf16 elements)."""
    return d_model % 8 == 0 and d_ff % 8 == 0


def balanced_counts(n_rows: int, n_experts: int) -> list[int]:
    """Rows per expert for `n_rows` split as evenly as they go (the first ones get the rest)."""
    base, extra = divmod(n_rows, n_experts)
    return [base + (e < extra) for e in range(n_experts)]


def choose_compute(experts: GroupedExperts, n_rows: int, device: torch.device) -> str:
    """`loop` or `grouped`, whichever ran a forward + backward faster here (median of five
    paired rounds, once per device type, expert kind and shape; rows bucketed by powers of
    two; cached)."""
    e, d, h = experts.w1_EDH.shape
    key = (device.type, experts.kind, e, d, h, 1 << max(0, n_rows - 1).bit_length())
    if key not in _CHOICE:
        probe = copy.deepcopy(experts).to(device)
        gen = torch.Generator(device).manual_seed(0)  # leaves the training RNG untouched
        x_SD = torch.randn(max(n_rows, e), d, device=device, generator=gen, requires_grad=True)
        counts = balanced_counts(x_SD.shape[0], e)
        # A warm-up round, then five rounds of both, back to back; the median of the
        # per-round ratios, as benchmarks/moe_layer.py pairs them: a busy neighbour slows
        # both paths of a round alike (one timing each chose the slower path under load).
        # On CPU, process time, and grouped_mm only for a clear (5 %) win: its CPU fallback
        # runs the same per-group matmuls as the loop.
        clock = time.perf_counter if device.type == "cuda" else time.process_time
        ratios = []
        for i in range(6):
            took = {}
            for name in ("loop", "grouped"):
                start = clock()
                with torch.enable_grad():  # first use may come in evaluation, under no_grad
                    getattr(probe, f"forward_{name}")(x_SD, counts).sum().backward()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                took[name] = clock() - start
            if i:
                ratios.append(took["grouped"] / max(took["loop"], 1e-9))
        margin = 1.0 if device.type == "cuda" else 0.95
        _CHOICE[key] = "grouped" if statistics.median(ratios) < margin else "loop"
    return _CHOICE[key]


class FeedForward(nn.Module):
    """Dense FFN (dense baseline and the shared expert): act(x W1) W2, no biases."""

    def __init__(self, *, d_model: int, d_ff: int, activation: str, out_std: float) -> None:
        super().__init__()
        self.fc = Linear(d_model, d_ff, bias=False)
        self.proj = Linear(d_ff, d_model, bias=False)
        nn.init.normal_(self.fc.weight, std=0.02)
        nn.init.normal_(self.proj.weight, std=out_std)
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.act(self.fc(x)))


def residual_std(n_layer: int) -> float:
    """GPT-2 init for projections into the residual stream: 0.02 / sqrt(2 * n_layer)."""
    return 0.02 / math.sqrt(2 * n_layer)
