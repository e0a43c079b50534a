"""Structural equality of graphs, up to the names of values (for Before/Expected pass tests and
for deciding whether a pass changed anything).

Two graphs are equal when they have the same outputs, in order, computed by nodes that match one
to one: same op, attributes, type, constant data (inputs and params by their external names), and
operands that match in turn. Unreachable nodes count too: they are paired in order.
"""

from __future__ import annotations

import numpy as np

from .graph import Graph, Node


def structural_diff(a: Graph, b: Graph) -> str | None:
    """None when `a` and `b` are structurally equal, else a sentence about the first difference."""
    if list(a.outputs) != list(b.outputs):
        return f"outputs differ: {list(a.outputs)} vs {list(b.outputs)}"
    pairs: dict[str, str] = {}
    taken: dict[str, str] = {}

    def match(x: str, y: str) -> str | None:
        if x in pairs or y in taken:
            if pairs.get(x) == y:
                return None
            return f"%{x} and %{y} are matched inconsistently (shared values differ)"
        nx_, ny = a[x], b[y]
        why = _node_diff(nx_, ny)
        if why:
            return f"%{x} vs %{y}: {why}"
        for i, (ox, oy) in enumerate(zip(nx_.operands, ny.operands)):
            why = match(ox, oy)
            if why:
                return why
        pairs[x], taken[y] = y, x
        return None

    for name in a.outputs:
        why = match(a.outputs[name], b.outputs[name])
        if why:
            return f"output '{name}': {why}"
    rest_a = [n for n in a.nodes if n.name not in pairs]
    rest_b = [n for n in b.nodes if n.name not in taken]
    if len(rest_a) != len(rest_b):
        return (f"different numbers of nodes not reachable from the outputs: "
                f"{[f'%{n.name}' for n in rest_a]} vs {[f'%{n.name}' for n in rest_b]}")
    for x, y in zip(rest_a, rest_b):
        why = match(x.name, y.name)
        if why:
            return f"unreachable node: {why}"
    return None


def structural_equal(a: Graph, b: Graph) -> bool:
    return structural_diff(a, b) is None


def _node_diff(x: Node, y: Node) -> str | None:
    if x.op != y.op:
        return f"op {x.op} vs {y.op}"
    if len(x.operands) != len(y.operands):
        return f"{len(x.operands)} vs {len(y.operands)} operands"
    if dict(x.attrs) != dict(y.attrs):
        return f"attributes {dict(x.attrs)} vs {dict(y.attrs)}"
    if x.type != y.type:
        return f"type {x.type} vs {y.type}"
    if (x.value is None) != (y.value is None):
        return "one carries constant data and the other not"
    if x.value is not None and x.value is not y.value and not np.array_equal(x.value, y.value, equal_nan=True):
        return "constant data differ"
    return None
