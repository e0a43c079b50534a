"""RLXPY_DEBUG: what the backend prints (to stderr) as it compiles.

    1  the code generation pipeline, the kernel list (native, alias or interpreter, and why),
       where the object code came from and how long each stage took
    2  also the optimised LLVM IR of the module
    3  also the LLVM IR as generated, and the assembly
"""

from __future__ import annotations

import sys

from .. import config


debug_level = config.debug_level


def emit(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def banner(title: str, body: str) -> str:
    """MLIR-style dump header around a block of text."""
    return f"// -----// {title} //----- //\n{body.rstrip()}\n"
