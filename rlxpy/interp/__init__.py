"""The numpy interpreter: runs any verified graph, node by node, with the rules in `rules.py`.

It is the oracle: constant folding evaluates with it, and every native kernel is checked against it.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..ir.graph import Graph, Node
from .rules import RULES, rule, sine_position_encoding

__all__ = ["RULES", "evaluate", "evaluate_node", "rule", "sine_position_encoding"]


def evaluate_node(node: Node, operands: list[np.ndarray]) -> np.ndarray:
    """One compute node's value from its operands' values, as float32 in the node's shape."""
    out = RULES[node.op](node, *operands)
    out = np.asarray(out, dtype=np.float32)
    if out.shape != node.type.shape:  # a rule that disagrees with the op's type inference
        raise AssertionError(f"rule for {node.op} gave shape {out.shape} for %{node.name}, typed {node.type}")
    return out


def evaluate(graph: Graph, inputs: Mapping[str, np.ndarray],
             params: Mapping[str, np.ndarray] | None = None, *, all_values: bool = False) -> dict[str, np.ndarray]:
    """Run `graph` on `inputs` (by input name) and `params` (by param name).

    Returns the outputs by output name, or every value by SSA name when `all_values` is set.
    Inputs and params must already be checked float32 arrays of the declared shapes (the compiled
    `Executable` does that); the results are contiguous arrays that share no memory with them.
    """
    params = params or {}
    values: dict[str, np.ndarray] = {}
    for node in graph.nodes:
        if node.op == "input":
            values[node.name] = inputs[node.attrs["name"]]
        elif node.op == "param":
            values[node.name] = params[node.attrs["name"]]
        elif node.op == "const":
            values[node.name] = node.value
        else:
            values[node.name] = evaluate_node(node, [values[o] for o in node.operands])
    if all_values:
        return values
    return {name: np.array(values[v], dtype=np.float32, order="C", copy=True) for name, v in graph.outputs.items()}
