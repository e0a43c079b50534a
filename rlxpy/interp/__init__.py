"""The numpy interpreter: runs any verified graph, node by node, with the rules in `rules/`.

It is the oracle: constant folding evaluates with it, and every native kernel is checked against it.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..ir.graph import Graph, Node
from ..ir.ops import OPS
from ..memory import allocating
from .rules import RULES, VIEWS, rule, sine_position_encoding

__all__ = ["RULES", "VIEWS", "call_bytes", "evaluate", "evaluate_node", "rule", "sine_position_encoding"]


def evaluate_node(node: Node, operands: list[np.ndarray]) -> np.ndarray:
    """One compute node's value from its operands' values, as float32 in the node's shape."""
    with allocating(f"evaluating %{node.name} ({node.op}) -> {node.type}", node.type.nbytes):
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
    results = {}
    for name, v in graph.outputs.items():
        with allocating(f"output '{name}' {graph[v].type} of @{graph.name}", graph[v].type.nbytes):
            results[name] = np.array(values[v], dtype=np.float32, order="C", copy=True)
    return results


def call_bytes(graph: Graph) -> dict[str, int]:
    """What `evaluate` holds at the end of a call, a lower bound: the inputs, every value it
    computed (it keeps them all; views and a repeated pure function of attributes cost nothing)
    and a copy of each output."""
    inputs = sum(n.type.nbytes for n in graph.nodes if n.op == "input")
    values, seen = 0, set()
    for n in graph.nodes:
        if OPS[n.op].is_source or n.op in VIEWS:
            continue
        if not n.operands:               # e.g. pos_encoding: its rule may share one array
            key = (n.op, repr(sorted(n.attrs.items())))
            if key in seen:
                continue
            seen.add(key)
        values += n.type.nbytes
    outputs = sum(graph[v].type.nbytes for v in graph.outputs.values())
    return {"inputs": inputs, "values": values, "outputs": outputs}
