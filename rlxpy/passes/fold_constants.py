"""fold-constants: evaluate, with the interpreter's rules, every node whose operands are all
constants, and replace it by a constant. In the SAM 2 neck this turns the position encodings
(which depend only on shapes) and the reshape/transpose of every bound weight into constants."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..interp import evaluate_node
from ..ir.graph import Graph
from ..ir.ops import OPS
from ..memory import allocating
from .base import Pass, PassContext, option, register


@register
@dataclass(frozen=True)
class FoldConstants(Pass):
    name: ClassVar[str] = "fold-constants"
    summary: ClassVar[str] = "replace every node whose operands are all constants by its value"
    max_elements: int = option(1 << 28, min=0)  # results larger than this stay computed at run time (remarked)

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        values: dict[str, np.ndarray] = {}
        nodes, changed = [], False
        for node in graph.nodes:
            foldable = not OPS[node.op].is_source and all(o in values for o in node.operands)
            if foldable and node.type.numel > self.max_elements:
                ctx.remark(node, "missed", f"not folded: {node.type.numel} elements exceed max-elements={self.max_elements}")
            elif foldable:
                with allocating(f"folding %{node.name} ({node.op}) into a constant {node.type}", node.type.nbytes):
                    value = np.ascontiguousarray(evaluate_node(node, [values[o] for o in node.operands]))
                if value.flags.writeable:         # a fresh result; a shared read-only one stays shared
                    value.setflags(write=False)
                node = node.with_(op="const", operands=(), attrs={}, value=value, origin=self.name)
                changed = True
            if node.op == "const":
                values[node.name] = node.value
            nodes.append(node)
        return graph.with_nodes(nodes) if changed else graph
