"""cse: nodes that compute the same thing (same op, operands, attributes and constant data) are
merged into the first of them; its users and the outputs are redirected."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..ir.graph import Graph
from .base import Pass, PassContext, register


@register
@dataclass(frozen=True)
class CommonSubexpressionElimination(Pass):
    name: ClassVar[str] = "cse"
    summary: ClassVar[str] = "merge nodes that compute the same value"

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        first: dict[tuple, str] = {}
        rename: dict[str, str] = {}
        nodes = []
        for node in graph.nodes:
            if any(o in rename for o in node.operands):
                node = node.with_(operands=tuple(rename.get(o, o) for o in node.operands))
            if node.op not in ("input", "param"):      # the interface is never merged
                key = node.key()
                if key in first:
                    rename[node.name] = first[key]
                    ctx.remark(node, "applied", f"same value as %{first[key]}")
                    continue
                first[key] = node.name
            nodes.append(node)
        if not rename:
            return graph
        return graph.with_nodes(nodes, {k: rename.get(v, v) for k, v in graph.outputs.items()})
