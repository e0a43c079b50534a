"""Readings of this process's memory, for telling a leak from noise (benchmarks/compile_leak.py and
the leak tests).

The resident set is what the operating system sees, but it hides a leak while the allocator hands
out memory freed earlier, and it keeps memory the allocator never returns. The C heap in use
(glibc's mallinfo2: allocated chunks plus mmapped blocks) counts exactly what is allocated and not
freed, which is where LLVM's objects live; Python's small objects are in pymalloc's arenas, outside
it. The number of memory mappings shows JIT engines, whose code is mapped page by page.
"""

from __future__ import annotations

import ctypes
import os
from functools import lru_cache

PAGE = os.sysconf("SC_PAGE_SIZE")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]


@lru_cache(maxsize=None)
def _mallinfo2():
    try:
        fn = ctypes.CDLL(None).mallinfo2          # glibc >= 2.33
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2
    return fn


def rss_mb() -> float:
    """Resident set size, MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def heap_mb() -> float | None:
    """C heap in use, MiB (malloc'd chunks and mmapped blocks); None without glibc's mallinfo2."""
    fn = _mallinfo2()
    if fn is None:
        return None
    m = fn()
    return (m.uordblks + m.hblkhd) / 2**20


def mappings() -> int:
    """How many memory mappings the process has."""
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)

