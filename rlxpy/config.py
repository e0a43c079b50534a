"""Every debugging knob is an environment variable, read here and nowhere else.

RLXPY_DEBUG=1  print the pass pipeline and the kernel list as a compile goes
RLXPY_DEBUG=2  also print the IR after every pass (and the optimised LLVM IR)
RLXPY_DEBUG=3  also print the LLVM IR and the assembly
RLXPY_CACHE_DIR  where compiled object code is cached (default: the user's cache directory)
RLXPY_TRACEBACK=1  let the command line show a traceback for a user's mistake
"""

from __future__ import annotations

import os


def debug_level() -> int:
    text = os.environ.get("RLXPY_DEBUG", "0").strip() or "0"
    try:
        return max(0, int(text))
    except ValueError:
        return 1
