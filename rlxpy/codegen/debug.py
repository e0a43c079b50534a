"""RLXPY_DEBUG: what the backend prints (to stderr) as it compiles.

    1  the code generation pipeline, the kernel list (native, alias or interpreter, and why),
       where the object code came from and how long each stage took
    2  also the optimised LLVM IR of the module
    3  also the LLVM IR as generated, and the assembly
"""

from __future__ import annotations

import os
import sys

from ..errors import RlxError


def debug_level() -> int:
    text = os.environ.get("RLXPY_DEBUG", "").strip()
    if not text:
        return 0
    try:
        level = int(text)
    except ValueError:
        level = -1
    if level < 0:
        raise RlxError(f"RLXPY_DEBUG={text!r}: expected a level 0, 1, 2 or 3")
    return level


def emit(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def banner(title: str, body: str) -> str:
    """MLIR-style dump header around a block of text."""
    return f"// -----// {title} //----- //\n{body.rstrip()}\n"
