"""The per-expert loop as one autograd function: no stacks, no concatenations.

Legend (suffix = shape): S rows sorted by expert (segment e holds counts[e] rows),
D model width, H hidden width of one expert, E experts.

Written through autograd (split, one matmul per expert on `unbind` views, `cat`), the loop
pays for three copies that do no arithmetic: the `cat` of the outputs, the `cat` of the
input gradient (split's backward) and the `stack` of the E per-expert weight gradients
(unbind's backward), 2 x E x D x H floats per step. Profiled at 32 experts (4096 tokens,
D 256, H 1024, fp32 CPU) these copies were ~10 % of the step. Here every matmul writes its
result straight into its rows of one preallocated buffer (`torch.mm(..., out=)`): the
outputs, the input gradient and each expert's slice of the [E, D, H] weight gradient. The
activation runs once per expert's rows.

The matmuls take the process's CPU engine (`cpu_matmul`). On torch's engine this is the same
arithmetic as autograd's loop (the same mm and activation kernels): the results equal the
grouped_mm path bitwise on CPU where rows are 64-byte aligned (tested), the autograd loop
within float rounding elsewhere, and match the per-token oracle. On oneDNN, whose op returns
a new tensor, a result is copied into its rows, and each expert runs on a window of a
multiple of `cpu_matmul.ROW_BUCKET` rows (a kernel build for every new row count otherwise);
the window's extra rows, another expert's, are read, their hidden rows and hidden gradients
zeroed in the backward, and nothing of them is written (tested against float64).
Only parameter-free element-wise activations have a backward here (GELU, ReLU, SiLU, and
SwiGLU's silu gate); other activations, autocast and DTensor weights use the autograd loop
(`supports`).
"""

from __future__ import annotations

import os
import queue
import threading

import torch
import torch.nn.functional as F
from torch import nn

from sm_toolkit.models.cpu_matmul import mm, mm_out, row_window


def supports(act: nn.Module, x_SD: torch.Tensor, weights: list[torch.Tensor]) -> bool:
    """Whether the fused loop can run this call (else the autograd loop does)."""
    if type(act) not in (nn.GELU, nn.ReLU, nn.SiLU):
        return False
    if torch.is_autocast_enabled(x_SD.device.type):
        return False  # mm(out=) takes no autocast; bf16 autocast runs the autograd loop
    return all(type(w) is torch.Tensor or type(w) is nn.Parameter for w in weights)


def _activate(act: nn.Module, a: torch.Tensor, out: torch.Tensor) -> None:
    if isinstance(act, nn.GELU):
        torch.ops.aten.gelu.out(a, approximate=act.approximate, out=out)
    elif isinstance(act, nn.ReLU):
        torch.clamp_min(a, 0, out=out)
    else:
        torch.ops.aten.silu.out(a, out=out)


def _activate_backward(
    act: nn.Module, g: torch.Tensor, a: torch.Tensor, h: torch.Tensor
) -> torch.Tensor:
    if isinstance(act, nn.GELU):
        return torch.ops.aten.gelu_backward(g, a, approximate=act.approximate)
    if isinstance(act, nn.ReLU):
        return torch.ops.aten.threshold_backward(g, h, 0)
    return torch.ops.aten.silu_backward(g, a)


def _segments(counts: list[int]) -> list[tuple[int, slice]]:
    out, start = [], 0
    for e, n in enumerate(counts):
        out.append((e, slice(start, start + n)))
        start += n
    return out


def _forward_segment(x_SD, y_SD, e, rows, act, w1_EDH, w2_EHD, w3_EDH):
    """Expert e on its rows: writes y_SD[rows], returns what its backward needs. On oneDNN
    the matmuls run on a window of rows (cpu_matmul.row_window), of which `keep` are e's."""
    window, keep = row_window(rows, x_SD.shape[0], x_SD, w1_EDH)
    x_wD = x_SD[window]
    a_wH = mm(x_wD, w1_EDH[e])
    # The hidden rows are kept as their own small tensors: they are still in cache for the
    # second matmul, and the allocator reuses their memory step after step (one [S, H]
    # buffer would be fresh pages, page-faulted, every step).
    h_wH = torch.empty_like(a_wH)
    _activate(act, a_wH, out=h_wH)
    b_wH = None
    if w3_EDH is not None:  # swiglu: h = silu(x w1) * (x w3)
        b_wH = mm(x_wD, w3_EDH[e])
        h_wH *= b_wH
    _mm_rows(h_wH, w2_EHD[e], y_SD[rows], keep)
    return window, keep, a_wH, b_wH, h_wH


def _mm_rows(a_wK: torch.Tensor, b_KN: torch.Tensor, out_rN: torch.Tensor, keep: slice) -> None:
    """out = (a @ b)[keep]: straight into `out` when `keep` is all of the window."""
    if keep.stop - keep.start == a_wK.shape[0]:
        mm_out(a_wK, b_KN, out_rN)
    else:
        out_rN.copy_(mm(a_wK, b_KN)[keep])


def _zero_outside(t_wH: torch.Tensor, keep: slice) -> None:
    """Zeroes a window's rows outside `keep` (none when the window is the expert's rows)."""
    if keep.start:
        t_wH[: keep.start].zero_()
    if keep.stop < t_wH.shape[0]:
        t_wH[keep.stop :].zero_()


def _backward_segment(saved, grads, e, rows, act, hidden) -> None:
    """Expert e's input rows and weight gradients, written into their slices of `grads`.
    A window's extra rows (another expert's) contribute nothing: their hidden rows and
    hidden gradients are zeroed before the weight gradients are taken."""
    x_SD, g_SD, w1_EDH, w2_EHD, w3_EDH = saved
    gx_SD, gw1_EDH, gw2_EHD, gw3_EDH = grads
    window, keep, a_wH, b_wH, h_wH = hidden
    x_wD, g_wD = x_SD[window], g_SD[window]
    _zero_outside(h_wH, keep)
    mm_out(h_wH.t(), g_wD, gw2_EHD[e])
    gh_wH = mm(g_wD, w2_EHD[e].t())
    _zero_outside(gh_wH, keep)
    if b_wH is None:
        ga_wH = _activate_backward(act, gh_wH, a_wH, h_wH)
    else:  # h = silu(a) * b
        gb_wH = gh_wH * F.silu(a_wH)
        ga_wH = torch.ops.aten.silu_backward(gh_wH * b_wH, a_wH)
        mm_out(x_wD.t(), gb_wH, gw3_EDH[e])
    mm_out(x_wD.t(), ga_wH, gw1_EDH[e])
    _mm_rows(ga_wH, w1_EDH[e].t(), gx_SD[rows], keep)
    if b_wH is not None:
        gx_SD[rows] += mm(gb_wH, w3_EDH[e].t())[keep]


class LoopExperts(torch.autograd.Function):
    """y = act(x w1_e) w2_e (mlp) or (silu(x w1_e) * (x w3_e)) w2_e (swiglu), per segment."""

    @staticmethod
    def forward(ctx, x_SD, counts, act, w1_EDH, w2_EHD, w3_EDH, workers=None):  # type: ignore[override]
        y_SD = x_SD.new_empty(x_SD.shape[0], w2_EHD.shape[2])
        segments = _segments(counts)
        hidden: list = [None] * len(segments)

        def run(e: int, rows: slice) -> None:
            hidden[e] = _forward_segment(x_SD, y_SD, e, rows, act, w1_EDH, w2_EHD, w3_EDH)

        ctx.workers = workers
        _run_segments(run, segments, workers)
        ctx.counts, ctx.act, ctx.hidden = counts, act, hidden
        ctx.save_for_backward(x_SD, w1_EDH, w2_EHD, w3_EDH)
        return y_SD

    @staticmethod
    def backward(ctx, g_SD):  # type: ignore[override]
        x_SD, w1_EDH, w2_EHD, w3_EDH = ctx.saved_tensors
        saved = (x_SD, g_SD.contiguous(), w1_EDH, w2_EHD, w3_EDH)
        gw1_EDH, gw2_EHD = torch.empty_like(w1_EDH), torch.empty_like(w2_EHD)
        gw3_EDH = torch.empty_like(w3_EDH) if w3_EDH is not None else None
        grads = (torch.empty_like(x_SD), gw1_EDH, gw2_EHD, gw3_EDH)
        hidden = ctx.hidden

        def run(e: int, rows: slice) -> None:
            _backward_segment(saved, grads, e, rows, ctx.act, hidden[e])

        _run_segments(run, _segments(ctx.counts), ctx.workers)
        ctx.hidden = None  # free the saved activations now, as autograd frees its own
        return grads[0], None, None, gw1_EDH, gw2_EHD, gw3_EDH, None


# Experts across threads. With T > 1 intra-op threads, each matmul of the loop is split
# over T threads, and small matmuls split badly. Measured at 2 threads, forward + backward of
# the loop alone, whole experts on 2 threads of one intra-op thread each vs one after
# another (x the serial time; D x H, rows an expert):
#   256 x 1024: 0.78 at 128 rows, 0.82-0.83 at 256, 0.86-1.00 at 512, 1.14 at 1024;
#   512 x 2048: 0.88 at 128 rows; 512 x 1024: 0.97 at 256; 256 x 512: 0.90 at 256;
#   128 x 256 to 128 x 1024: 0.91-1.02, and 1.05-1.08 x slower for a whole MoE LM step
#   (D 128, H 256, 256-512 rows), where the hand-over outweighs matmuls this small.
# The rule keeps the clear wins. It is a rule, not a per-process measurement, because the
# two schedules can round differently (MKL splits a matmul by rows over threads): the same
# job with the same thread count must give the same numbers, a resumed one included.
USE_THREADS = True  # False: experts one after another, always
THREAD_MAX_ROWS = 256  # mean rows an expert
THREAD_MIN_WEIGHTS = 256 * 512  # D x H of one expert's matrix


def expert_threads(
    x_SD: torch.Tensor, counts: list[int], weights: list[torch.Tensor]
) -> _Workers | None:
    """The worker threads that run this call's experts, or None for the serial loop: one
    intra-op thread, non-CPU tensors, fewer than two experts with rows per thread, experts
    outside the rule above (more than THREAD_MAX_ROWS rows on average, or matrices under
    THREAD_MIN_WEIGHTS), or a dispatch mode (a memory tracker, a recorder) or the compiler
    watching this thread's ops, which other threads' ops would escape."""
    threads = torch.get_num_threads()
    if not USE_THREADS or threads < 2 or x_SD.device.type != "cpu":
        return None
    if sum(1 for n in counts if n) < 2 * threads:
        return None  # two experts a thread at least: each thread finds work, and balance
    e, d, h = weights[0].shape
    if x_SD.shape[0] > THREAD_MAX_ROWS * e or d * h < THREAD_MIN_WEIGHTS:
        return None
    if torch._C._len_torch_dispatch_stack() or torch.compiler.is_compiling():
        return None
    return _Workers.get(threads)


def _run_segments(run, segments: list[tuple[int, slice]], workers: _Workers | None) -> None:
    # Closed workers: the thread count changed between a forward and its backward, and a
    # new pool replaced the one the forward used; the backward runs serially.
    if workers is None or workers.closed:
        for e, rows in segments:
            run(e, rows)
        return
    # Largest first, each worker taking the next when it is free: dropless segments differ.
    pending = queue.SimpleQueue()
    for e, rows in sorted(segments, key=lambda s: s[1].start - s[1].stop):
        pending.put((e, rows))

    def drain() -> None:
        while True:
            try:
                e, rows = pending.get_nowait()
            except queue.Empty:
                return
            run(e, rows)

    workers.run_all(drain)


class _Workers:
    """T daemon threads, each with one intra-op thread, that run a task together."""

    _pool: _Workers | None = None
    _lock = threading.Lock()

    @classmethod
    def get(cls, n: int) -> _Workers:
        with cls._lock:
            if cls._pool is None or cls._pool.n != n:
                if cls._pool is not None:  # the thread count changed: end the old workers
                    cls._pool.close()
                cls._pool = cls(n)
            return cls._pool

    def __init__(self, n: int) -> None:
        self.n, self.closed = n, False
        self._inboxes: list[queue.SimpleQueue] = [queue.SimpleQueue() for _ in range(n)]
        ready = threading.Barrier(n + 1)
        self._threads = [
            threading.Thread(
                target=self._serve, args=(inbox, ready), name=f"moe-experts-{i}", daemon=True
            )
            for i, inbox in enumerate(self._inboxes)
        ]
        for thread in self._threads:
            thread.start()
        ready.wait()
        # torch.set_num_threads(1) in a worker also set the count that threads started from
        # now on begin with; the calling thread's own count is untouched: set both back.
        torch.set_num_threads(n)

    @staticmethod
    def _serve(inbox: queue.SimpleQueue, ready: threading.Barrier) -> None:
        torch.get_num_threads()  # torch's per-thread lazy set-up runs now, not at the first op
        torch.set_num_threads(1)
        ready.wait()
        while True:
            task, done = inbox.get()
            if task is None:
                return
            error = None
            try:
                with torch.no_grad():  # grad mode is per thread; the caller's is off here
                    task()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                error = exc
            # Drop the task before reporting: it holds the caller's tensors (the gradients
            # among them), and autograd copies a gradient that anything else still holds.
            task = None
            done.put(error)

    def run_all(self, task) -> None:
        """Runs `task` on every worker at once; returns when all are done (re-raises)."""
        done: queue.SimpleQueue = queue.SimpleQueue()
        for inbox in self._inboxes:
            inbox.put((task, done))
        errors = [done.get() for _ in self._inboxes]
        for exc in errors:
            if exc is not None:
                raise exc

    def close(self) -> None:
        self.closed = True
        for inbox in self._inboxes:
            inbox.put((None, None))


def _forget_workers_after_fork() -> None:
    _Workers._pool = None  # a forked child (a DataLoader worker) has none of the threads
    _Workers._lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_workers_after_fork)
