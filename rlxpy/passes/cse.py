"""cse: nodes that compute the same thing (same op, operands, attributes and constant data) are
merged into the first of them; its users and the outputs are redirected."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..ir.graph import Graph, Node
from ..ir.ops import OPS
from .base import Pass, PassContext, register


@register
@dataclass(frozen=True)
class CommonSubexpressionElimination(Pass):
    name: ClassVar[str] = "cse"
    summary: ClassVar[str] = "merge nodes that compute the same value"

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        seen: dict[tuple, list[Node]] = {}
        rename: dict[str, str] = {}
        nodes = []
        for node in graph.nodes:
            if any(o in rename for o in node.operands):
                node = node.with_(operands=tuple(rename.get(o, o) for o in node.operands))
            if not OPS[node.op].is_interface:      # the interface is never merged
                candidates = seen.setdefault(node.key(), [])
                same = next((c for c in candidates if _same_data(c, node)), None)
                if same is not None:
                    rename[node.name] = same.name
                    ctx.remark(node, "applied", f"same value as %{same.name}")
                    continue
                candidates.append(node)
            nodes.append(node)
        if not rename:
            return graph
        return graph.with_nodes(nodes, {k: rename.get(v, v) for k, v in graph.outputs.items()})


def _same_data(a: Node, b: Node) -> bool:
    """Keys match; for consts the data must match too (the key holds only a fingerprint)."""
    return a.value is None or a.value is b.value or np.array_equal(a.value, b.value)
