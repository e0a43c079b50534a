"""`rlxpy.compile`: bind params, verify, optimise, and hand the graph to a backend."""

from __future__ import annotations

from typing import Mapping

from .errors import RlxError
from .executable import Executable, InterpExecutable
from .ir.graph import Graph
from .ir.verify import verify
from .params import bind_params

TARGETS = ("interp", "llvm")


def compile(graph: Graph, params: Mapping[str, object] | None = None, target: str = "interp",
            **options: object) -> Executable:
    """Compile `graph` with `params` bound as constants, for `target` ("interp" or "llvm").

    Options of target "llvm" (strict, cache, compare_with, dump_dir, threads): see
    `rlxpy.codegen.compile_llvm`.
    """
    if not isinstance(graph, Graph):
        raise RlxError(f"compile() takes a Graph, got {type(graph).__name__}")
    if target not in TARGETS:
        raise RlxError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    source = verify(graph)
    bound = bind_params(source, params)
    if target == "llvm":
        from .codegen import compile_llvm
        return compile_llvm(bound, source, **options)
    if options:
        raise RlxError(f"option '{sorted(options)[0]}' does not apply to target {target!r}")
    return InterpExecutable(bound, source)
