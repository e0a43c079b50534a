"""`rlxpy.compile`: bind params, verify, optimise, and hand the graph to a backend."""

from __future__ import annotations

from typing import Mapping

from .errors import RlxError
from .executable import Executable, InterpExecutable
from .ir.graph import Graph
from .ir.verify import verify
from .params import bind_params

TARGETS = ("interp",)


def compile(graph: Graph, params: Mapping[str, object] | None = None, target: str = "interp") -> Executable:
    """Compile `graph` with `params` bound as constants, for `target` ("interp")."""
    if not isinstance(graph, Graph):
        raise RlxError(f"compile() takes a Graph, got {type(graph).__name__}")
    if target not in TARGETS:
        raise RlxError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    source = verify(graph)
    bound = bind_params(source, params)
    return InterpExecutable(bound, source)
