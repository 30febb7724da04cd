"""glibc's malloc on a CPU training host: what a step frees is kept for the next step.

A training step allocates and frees the same tensors every step. By default glibc trims
the free top of its heap whenever it passes a threshold, and hands allocations above its
mmap threshold (128 KiB, rising with use to 32 MiB) to mmap, unmapping them on free; the
next step's writes then fault fresh pages in, which the kernel zeroes (the MoE LM's
default step here: a median of 5-8k faults, 20-30 MiB, every step). `keep_freed_memory`
turns trimming off and fixes the mmap threshold at glibc's largest, 32 MiB: freed memory
below it stays in the heap and is reused, and resident memory stays near the step's peak
instead of falling between steps (as PyTorch's CUDA caching allocator keeps device memory,
or jemalloc with decay off in Intel's CPU launcher, `torch.backends.xeon.run_cpu`).

Allocations of 32 MiB and more are still mapped and given back. Kept in the heap too
(`up_to=None`, what `benchmarks/moe_layer.py --malloc no-mmap` uses to time arithmetic
alone), they make it grow for several steps before freed blocks fit (torch asks for
64-byte aligned blocks, a little more than a freed one): a 64 MiB tensor made and freed in
a loop took 734 MiB resident, against 222 when mapped. Other C libraries (musl, macOS)
keep their own behaviour.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4  # <malloc.h>
MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit
NEVER = 2**31 - 1  # mallopt takes an int


@cache
def keep_freed_memory(up_to: int | None = MMAP_THRESHOLD_MAX) -> bool:
    """From now on malloc never trims, and maps only allocations of `up_to` bytes and more
    (None: none). True where the C library took every setting."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # no C library by that name, or no mallopt in it
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    mapped = (M_MMAP_MAX, 0) if up_to is None else (M_MMAP_THRESHOLD, up_to)
    return bool(mallopt(*mapped)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER))
