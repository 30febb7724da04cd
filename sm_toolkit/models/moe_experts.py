"""Expert feed-forward networks: a stack of E two-layer MLPs, and the dense FFN.

Legend for tensor names (suffix = shape):
    S token rows sorted by expert (segment e holds counts[e] rows)
    D model width
    H hidden width of one expert (d_ff)
    E experts held by this module
    C capacity (rows per expert in a padded buffer)

Weights are stored stacked, w1_EDH and w2_EHD, so the state_dict layout does not depend on
how experts are split across processes (`moe_parallel.py` slices the stack).

Why the ragged path unbinds the stack once per call instead of indexing `w1_EDH[e]` in the
loop: the backward of each `W[e]` writes a zero-filled full-size [E, D, H] gradient, i.e.
O(E^2 D H) memory traffic (measured ~4x slower than a dense FFN at E = 32). The backward of
one `unbind` is one `stack`. Experts that receive zero rows run a [0, D] matmul, which is
valid and contributes a zero gradient.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from sm_toolkit.models.activations import make_activation


class GroupedExperts(nn.Module):
    """E independent MLPs x -> act(x @ w1_e) @ w2_e, run over expert-sorted rows.

    Every parameter here is an expert parameter (`is_expert = True` on each), which lets the
    model put them in their own optimizer group and keep them out of data-parallel
    all-reduce under expert parallelism.
    """

    def __init__(
        self, *, n_experts: int, d_model: int, d_ff: int, activation: str, out_std: float
    ) -> None:
        super().__init__()
        self.n_experts = n_experts
        self.w1_EDH = nn.Parameter(torch.empty(n_experts, d_model, d_ff))
        self.w2_EHD = nn.Parameter(torch.empty(n_experts, d_ff, d_model))
        nn.init.normal_(self.w1_EDH, std=0.02)
        nn.init.normal_(self.w2_EHD, std=out_std)
        for p in (self.w1_EDH, self.w2_EHD):
            p.is_expert = True  # type: ignore[attr-defined]
        self.act = make_activation(activation)

    def forward(self, x_SD: torch.Tensor, counts: list[int]) -> torch.Tensor:
        """Ragged path: rows sorted by expert, `counts[e]` rows for expert e (sum = S)."""
        assert len(counts) == self.n_experts and sum(counts) == x_SD.shape[0]
        w1s = self.w1_EDH.unbind(0)
        w2s = self.w2_EHD.unbind(0)
        outs = []
        for e, x_segD in enumerate(torch.split(x_SD, counts)):
            outs.append(self.act(x_segD @ w1s[e]) @ w2s[e])
        return torch.cat(outs, dim=0)

    def forward_padded(self, x_ECD: torch.Tensor) -> torch.Tensor:
        """Capacity-padded path: one batched matmul per layer over [E, C, D] buffers."""
        return torch.bmm(self.act(torch.bmm(x_ECD, self.w1_EDH)), self.w2_EHD)

    def slice(self, start: int, stop: int) -> GroupedExperts:
        """A new module holding copies of experts start..stop-1 (for expert parallelism)."""
        part = copy.deepcopy(self)
        part.n_experts = stop - start
        part.w1_EDH = nn.Parameter(self.w1_EDH.detach()[start:stop].clone())
        part.w2_EHD = nn.Parameter(self.w2_EHD.detach()[start:stop].clone())
        for p in (part.w1_EDH, part.w2_EHD):
            p.is_expert = True  # type: ignore[attr-defined]
        return part

    def extra_repr(self) -> str:
        e, d, h = self.w1_EDH.shape
        return f"n_experts={e}, d_model={d}, d_ff={h}"


class FeedForward(nn.Module):
    """Dense FFN (dense baseline and the shared expert): act(x W1) W2, no biases."""

    def __init__(self, *, d_model: int, d_ff: int, activation: str, out_std: float) -> None:
        super().__init__()
        self.fc = nn.Linear(d_model, d_ff, bias=False)
        self.proj = nn.Linear(d_ff, d_model, bias=False)
        nn.init.normal_(self.fc.weight, std=0.02)
        nn.init.normal_(self.proj.weight, std=out_std)
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.act(self.fc(x)))


def residual_std(n_layer: int) -> float:
    """GPT-2 init for projections into the residual stream: 0.02 / sqrt(2 * n_layer)."""
    return 0.02 / math.sqrt(2 * n_layer)
