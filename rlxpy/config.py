"""Every knob is an environment variable, read here and nowhere else (as numba does).

RLXPY_DEBUG=1        print the pass pipeline and the kernel list as a compile goes
RLXPY_DEBUG=2        also print the IR after every pass and the optimised LLVM IR
RLXPY_DEBUG=3        also print the LLVM IR as generated and the assembly
RLXPY_CACHE_DIR      where compiled object code is cached (default $XDG_CACHE_HOME/rlxpy or ~/.cache/rlxpy)
RLXPY_VECTOR_LANES   narrow the kernels' vectors to 4, 8 or 16 float lanes (default: the widest the CPU has)
RLXPY_TRACEBACK=1    let the command line show a traceback for a user's mistake
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError


def debug_level() -> int:
    text = os.environ.get("RLXPY_DEBUG", "").strip()
    if not text:
        return 0
    if text not in ("0", "1", "2", "3"):
        raise ConfigError(f"RLXPY_DEBUG={text!r}: expected a level 0, 1, 2 or 3")
    return int(text)


def cache_dir() -> Path:
    env = os.environ.get("RLXPY_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "rlxpy"


def vector_lanes() -> int | None:
    """The lanes RLXPY_VECTOR_LANES asks for, or None for the CPU's widest."""
    text = os.environ.get("RLXPY_VECTOR_LANES", "").strip()
    if not text:
        return None
    if text not in ("4", "8", "16"):
        raise ConfigError(f"RLXPY_VECTOR_LANES={text!r}: expected 4, 8 or 16")
    return int(text)


def traceback_wanted() -> bool:
    return bool(os.environ.get("RLXPY_TRACEBACK"))
