"""dce: drop every node no output depends on. Inputs and params stay: they are the graph's
interface, and the caller still passes them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..ir.graph import Graph
from ..ir.ops import OPS
from .base import Pass, PassContext, register


@register
@dataclass(frozen=True)
class DeadCodeElimination(Pass):
    name: ClassVar[str] = "dce"
    summary: ClassVar[str] = "remove nodes that no output depends on (inputs and params stay)"

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        live = graph.live()
        kept = [n for n in graph.nodes if n.name in live or OPS[n.op].is_interface]
        return graph if len(kept) == len(graph.nodes) else graph.with_nodes(kept)
