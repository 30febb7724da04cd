"""runtime/allocator.py: glibc keeps what is freed below 32 MiB in its heap (no mmap, no
trim), maps larger allocations as by default, and maps nothing with up_to=None.

Each case runs in its own interpreter (mallopt is process-wide) and reads glibc's own
account (mallinfo2) while a tensor is held and after it is freed."""

import ctypes
import subprocess
import sys

import pytest

HOLD_AND_FREE = """
import ctypes, sys
import torch
from sm_toolkit.runtime import allocator

class Info(ctypes.Structure):  # glibc's struct mallinfo2
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

info = ctypes.CDLL("libc.so.6").mallinfo2
info.restype = Info
mode, mib = sys.argv[1], int(sys.argv[2])
kept = {"keep": allocator.keep_freed_memory, "all": lambda: allocator.keep_freed_memory(None)}
print(kept[mode]() if mode in kept else False)
x = torch.ones(mib * 2**18)
held = info()
del x
freed = info()
print(held.hblkhd >> 20, freed.fordblks >> 20)  # MiB mapped while held, MiB free in the heap
"""


def _hold_and_free(mode: str, mib: int) -> tuple[bool, int, int]:
    args = [sys.executable, "-c", HOLD_AND_FREE, mode, str(mib)]
    kept, mapped, heap_free = subprocess.run(
        args, capture_output=True, text=True, check=True
    ).stdout.split()
    return kept == "True", int(mapped), int(heap_free)


def _has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _has_mallinfo2(), reason="glibc >= 2.33 (mallinfo2)")


def test_under_32_mib_is_kept_in_the_heap_after_free():
    kept, mapped, heap_free = _hold_and_free("glibc", 20)
    assert not kept and mapped >= 20 and heap_free < 20  # mapped, and unmapped on free
    kept, mapped, heap_free = _hold_and_free("keep", 20)
    assert kept and mapped < 20 and heap_free >= 20  # in the heap, and still there


def test_from_32_mib_on_it_is_mapped_unless_everything_is_kept():
    kept, mapped, heap_free = _hold_and_free("keep", 64)
    assert kept and mapped >= 64 and heap_free < 64
    kept, mapped, heap_free = _hold_and_free("all", 64)
    assert kept and mapped < 64 and heap_free >= 64  # benchmarks/moe_layer.py --malloc no-mmap


FAULTS_OF_FRESH_32_MIB = """
import resource, sys
import torch
from sm_toolkit.runtime import allocator
if sys.argv[1] == "all":
    allocator.keep_freed_memory(None)

def step():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(2):  # 32 MiB each: glibc maps these by default
        torch.empty(4096, 2048).fill_(1.0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

print(*(step() for _ in range(12)))
"""


def test_with_nothing_mapped_a_step_of_32_mib_blocks_stops_faulting():
    """Once warm, a step that allocates and frees 32 MiB blocks writes no fresh pages;
    glibc's defaults fault on every such block."""
    faults = {}
    for mode in ("glibc", "all"):
        run = subprocess.run(
            [sys.executable, "-c", FAULTS_OF_FRESH_32_MIB, mode],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        faults[mode] = [int(n) for n in run.stdout.split()]
    # glibc's heap grows a few steps before its freed blocks fit (torch asks for 64-byte
    # aligned memory, a little more than a freed block): measured, steady from step 5 or 6
    assert min(faults["glibc"][-4:]) >= 8000, faults  # a fresh 32 MiB block is 8192 pages
    assert max(faults["all"][-4:]) < 100, faults
