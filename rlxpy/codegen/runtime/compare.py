"""Per-node comparison of native results with the interpreter (`compare_with="interp"`).

Each native node's result is checked against its interpreter rule evaluated on the very operand
values the kernel read, so an error is pinned to the node that made it and never inherited. The
tolerance is the one model differential testing uses (`rlxpy.numerics`): per element, the node's
own roundings over the magnitude of its operands. Aliases (views, no code) and interpreter steps
are exact by construction and are not checked.
"""

from __future__ import annotations

import numpy as np

from ...errors import MiscompileError
from ...ir.graph import Graph, Node
from ...ir.verify import where
from ...numerics import node_budget


def check_node(graph: Graph, node: Node, symbol: str, got: np.ndarray, ref: np.ndarray,
               operands: list[np.ndarray]) -> None:
    """Raise `MiscompileError` if `got` (native) differs from `ref` (interpreter) beyond the node's
    budget on these `operands`."""
    budget = node_budget(node, operands, [graph.type_of(o) for o in node.operands])
    why = budget.compare("out", np.asarray(got), np.asarray(ref, dtype=np.float32))
    if why:
        raise MiscompileError(f"{where(node)}: native kernel {symbol} differs from the interpreter: {why}")
