"""fp32 matmuls on CPU through oneDNN where torch's default engine leaves half the core idle.

torch runs an fp32 matmul on an x86 CPU with MKL's sgemm, and MKL picks its kernels by the
CPU's vendor: on AMD's CPUs it runs AVX2 kernels, also on Zen 5 cores, whose AVX-512 units
are 512 bits wide. oneDNN, which torch ships too (`torch.ops.mkldnn._linear_pointwise`, the
op inductor's CPU linear fusions call), picks its kernels by instruction set. Measured on
this project's machine (AMD EPYC, family 26 = Zen 5; `benchmarks/cpu_matmul.py`), fp32:
86-91 GFLOP/s a thread through MKL and 155-203 through oneDNN on the MoE layer's shapes,
1.8-2.2x, at one thread and at two. Both compute in fp32: against a float64 product of
2048^3, a relative error of 3.4e-7 (MKL) and 1.1e-6 (oneDNN), where a bf16 product's is
3.3e-3. They round differently, since their blocking differs.

Engines (`set_engine`; the training entrypoints' `cpu_matmul` hyperparameter):
    auto    oneDNN on AMD CPUs of family 26 (Zen 5) and later with AVX-512, torch's default
            elsewhere: Intel's CPUs, where MKL runs its AVX-512 kernels, and Zen 4, whose
            AVX-512 runs on 256-bit units at AVX2's peak (neither was measured here; the
            rule keeps torch's default where oneDNN was not measured faster). A rule, not a
            timing: a job on one machine gives the same numbers every time, a resumed job
            bit for bit.
    torch   torch's default everywhere (MKL on x86).
    onednn  oneDNN on every CPU that has it.

Only plain fp32 tensors on the CPU, outside autocast and the compiler, take oneDNN (FSDP2's
gathered parameters are plain tensors); everything else (CUDA, bf16, a DTensor, code under
torch.compile, which picks its own kernels) runs exactly as torch runs it.
"""

from __future__ import annotations

import contextlib
import functools
import platform
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from sm_toolkit.errors import ConfigError

ENGINES = ("auto", "torch", "onednn")
_engine = "auto"


def set_engine(name: str) -> None:
    """Choose the engine for this process (one of ENGINES)."""
    global _engine
    if name not in ENGINES:
        raise ConfigError("cpu_matmul", name, f"one of {', '.join(ENGINES)}")
    _engine = name


@contextlib.contextmanager
def using(name: str) -> Iterator[None]:
    """The engine `name` inside the block, the one set before it after."""
    before = _engine
    set_engine(name)
    try:
        yield
    finally:
        set_engine(before)


def engine() -> str:
    """The engine fp32 CPU matmuls run on now: 'onednn' or 'torch'."""
    if not torch.backends.mkldnn.is_available():
        return "torch"
    if _engine == "auto":
        return "onednn" if _zen5_or_later(*_cpu_facts()) else "torch"
    return _engine


def _zen5_or_later(vendor: str, family: int, capability: str) -> bool:
    return vendor == "AuthenticAMD" and family >= 26 and capability.startswith("AVX512")


@functools.cache
def _cpu_facts() -> tuple[str, int, str]:
    """(vendor, family, torch's CPU capability) of an x86 Linux machine, else ('', 0, ...)."""
    capability = torch.backends.cpu.get_cpu_capability()
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return "", 0, capability
    vendor, family = "", 0
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "vendor_id":
                    vendor = value.strip()
                elif key.strip() == "cpu family":
                    family = int(value)
                if vendor and family:
                    break
    except (OSError, ValueError):
        pass
    return vendor, family, capability


def _plain(t: torch.Tensor) -> bool:
    return type(t) is torch.Tensor or type(t) is nn.Parameter


def applies(*tensors: torch.Tensor) -> bool:
    """Whether a matmul of these tensors runs on oneDNN here (oneDNN refuses empty ones)."""
    if torch.compiler.is_compiling():  # first: the compiler traces none of the rest
        return False
    if engine() != "onednn" or torch.is_autocast_enabled("cpu"):
        return False
    return all(
        _plain(t) and t.device.type == "cpu" and t.dtype == torch.float32 and t.numel()
        for t in tensors
    )


# oneDNN builds (JIT-compiles) a kernel for every new matmul shape and caches it: 0.3-0.7 ms
# the first time a shape comes (measured at D 128-256, H 512-1024), microseconds after.
# Routed experts see a new row count nearly every step, so a loop over them runs each
# expert on a window of a multiple of ROW_BUCKET rows (`row_window`): a few dozen shapes in
# all, built in the first steps, at the cost of ROW_BUCKET / 2 extra rows an expert on
# average (1.5 % of the rows at 8 experts of 1024 rows, 6 % at 32 of 256). Running the
# remainder as a second, small matmul on torch's engine instead cost 17 % of the layer's
# step at 32 experts (profiled).
ROW_BUCKET = 32


def row_window(rows: slice, n_rows: int, *tensors: torch.Tensor) -> tuple[slice, slice]:
    """The rows a loop over ragged segments (`tensors`: its rows and its weights) runs one
    expert's matmuls on, and where that expert's own rows sit in them: (window, keep),
    `window` a slice of the n_rows rows and `keep` a slice of the window. On oneDNN the
    window is `rows` grown to a multiple of ROW_BUCKET with the rows after them (before them
    at the end of the buffer): the caller reads the extra rows, zeroes what they contribute
    and writes back only `keep`. (A non-finite value in the extra rows would turn the zeroed
    contribution into NaN; it would have made the step's loss non-finite already.)
    Elsewhere the window is `rows` itself."""
    n = rows.stop - rows.start
    padded = -(-n // ROW_BUCKET) * ROW_BUCKET
    small = min(min(t.shape[-2:]) for t in tensors) < ROW_BUCKET  # torch's engine runs it
    if n == 0 or padded == n or padded > n_rows or small or not applies(*tensors):
        return rows, slice(0, n)
    start = min(rows.start, n_rows - padded)
    return slice(start, start + padded), slice(rows.start - start, rows.stop - start)


def _on_onednn(a: torch.Tensor, b: torch.Tensor) -> bool:
    return min(a.shape[0], a.shape[1], b.shape[1]) >= ROW_BUCKET and applies(a, b)


def _onednn_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # The op computes X W^T + B with W as [out, in]; b.t() is a view, which oneDNN reads
    # through its strides (measured: as fast as a contiguous copy, without the copy).
    return torch.ops.mkldnn._linear_pointwise(a, b.t(), None, "none", [], "")


def mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b for 2-D a [M, K] and b [K, N] (no autograd on the oneDNN path). Matrices with
    a side under ROW_BUCKET (an empty expert, a test's tiny layer) run on torch's engine."""
    return _onednn_mm(a, b) if _on_onednn(a, b) else a @ b


def mm_out(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> None:
    """out = a @ b, written into `out` (a view, e.g. rows of a larger buffer)."""
    if _on_onednn(a, b):
        out.copy_(_onednn_mm(a, b))
    else:
        torch.mm(a, b, out=out)


class _OneDNNLinear(torch.autograd.Function):
    """y = x W^T (+ b); the backward's two matmuls run on oneDNN too."""

    @staticmethod
    def forward(ctx, x, weight, bias):  # type: ignore[override]
        x_MI = x.reshape(-1, x.shape[-1])
        y_MO = torch.ops.mkldnn._linear_pointwise(x_MI, weight, bias, "none", [], "")
        ctx.save_for_backward(x_MI, weight)
        ctx.has_bias, ctx.x_shape = bias is not None, x.shape
        return y_MO.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        x_MI, weight = ctx.saved_tensors
        g_MO = g.reshape(-1, weight.shape[0])
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = _onednn_mm(g_MO, weight).view(ctx.x_shape)  # g W
        if ctx.needs_input_grad[1]:
            # oneDNN takes its left operand contiguous, so a transposed one is copied: take
            # g^T x (copies g, M x out) or (x^T g)^T (copies x, M x in), the smaller copy.
            # Measured on the dense FFN's [4096, 2048] hidden: 26 ms instead of 49.
            if weight.shape[0] <= weight.shape[1]:
                gw = _onednn_mm(g_MO.t(), x_MI)
            else:
                gw = _onednn_mm(x_MI.t(), g_MO).t().contiguous()
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g_MO.sum(0)
        return gx, gw, gb


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear, on oneDNN where `applies` says so."""
    tensors = (x, weight) if bias is None else (x, weight, bias)
    if applies(*tensors):
        return _OneDNNLinear.apply(x, weight, bias)
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """nn.Linear (same parameters, same state_dict) whose matmuls take this module's engine."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
