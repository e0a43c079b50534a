"""How far a float32 result may be from the oracle's, element by element: the one tolerance model,
used by differential testing and by the native runtime's per-node check (`compare_with="interp"`).

A float32 sum of n products is off by at most about n * eps * sum |a_i * b_i| (the standard
forward-error bound), so each element's budget scales with
  - its magnitude: the same graph evaluated on absolute values (|inputs|, |consts|, |factors|),
    which gives sum |a_i * b_i| for a matmul and the sum of magnitudes for an add, so that
    cancellation in the result does not shrink the budget; and
  - the roundings on the way: the longest chain of float32 roundings that feeds it, each op adding
    what its declaration says (`OpDef.rounding`: the K of a matmul, one for an add, none for a
    layout op or a relu).
Real errors are about sqrt(n) * eps, so the worst-case bound leaves room without hiding a real
bug: a dropped bias or a wrong index is off by the size of the value itself.
A NaN or infinity where the oracle has a finite value is always a failure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .interp import evaluate_node
from .ir.graph import Graph, Node
from .ir.ops import OPS, epilogue_operands

EPS32 = float(np.finfo(np.float32).eps)
SLACK = 4.0          # on top of the worst-case bound: rounding of the inputs and of the bound itself
FLOOR = 1e-30        # below any representable difference that matters


def reduction_lengths(graph: Graph) -> dict[str, int]:
    """For every value, the longest chain of float32 roundings that feeds it."""
    length: dict[str, int] = {}
    for node in graph.nodes:
        deepest = max((length[o] for o in node.operands), default=0)
        opdef = OPS[node.op]
        own = opdef.roundings([graph.type_of(o) for o in node.operands], node.attrs)
        length[node.name] = deepest + own
    return length


def magnitudes(graph: Graph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every output's magnitude: the scale of its rounding error. Each op says how to find it
    (`OpDef.magnitude`): by default its rule on the magnitudes of its operands, |rule(|operands|)|,
    right for every op whose rule is monotone in their magnitudes (sums and products; a scale's
    sign and pos_encoding's sin/cos are taken care of by the outer absolute value); the sum of its
    operands' magnitudes for a difference; its first operand's for a function whose error follows
    its argument."""
    values: dict[str, np.ndarray] = {}
    for node in graph.nodes:
        if node.op == "input":
            values[node.name] = np.abs(inputs[node.attrs["name"]])
        elif node.value is not None:
            values[node.name] = np.abs(node.value)
        else:
            values[node.name] = _magnitude(node, [values[o] for o in node.operands])
    return {k: values[v] for k, v in graph.outputs.items()}


def _magnitude(node: Node, operands: list[np.ndarray]) -> np.ndarray:
    opdef = OPS[node.op]
    how = opdef.magnitude
    if callable(how):
        return np.asarray(how(dict(node.attrs), operands), np.float32)
    epilogue = next((name for name, a in opdef.attrs.items() if a.kind == "steps" and node.attrs.get(name)), None)
    if epilogue is not None:
        # the body first, then each step by its own op's magnitude: evaluated whole on magnitudes,
        # a scale by a negative factor followed by a relu would make a nonzero result's magnitude 0
        fixed = len(opdef.fixed_operands)
        body = node.with_(operands=node.operands[:fixed], attrs={**node.attrs, epilogue: ()})
        value = _magnitude(body, operands[:fixed])
        steps = node.attrs[epilogue]
        for step, extra in zip(steps, epilogue_operands(steps, operands[fixed:])):
            step_node = Node(node.name, step.op, tuple(f"a{i}" for i in range(1 + len(extra))), step.attributes,
                             node.type)
            value = _magnitude(step_node, [value, *extra])
        return value
    if how == "operands":
        total = np.zeros(node.type.shape, np.float64)
        for a in operands:
            total = total + a
        return total.astype(np.float32)
    if how == "first":
        return np.broadcast_to(operands[0], node.type.shape).astype(np.float32)
    return np.abs(evaluate_node(node, operands))


@dataclass
class Budget:
    """Per-output tolerances derived from the oracle graph."""

    magnitude: dict[str, np.ndarray]
    length: dict[str, int]

    @classmethod
    def of(cls, graph: Graph, inputs: dict[str, np.ndarray]) -> "Budget":
        lengths = reduction_lengths(graph)
        return cls(magnitudes(graph, inputs), {k: lengths[v] for k, v in graph.outputs.items()})

    def compare(self, name: str, actual: np.ndarray, oracle: np.ndarray) -> str | None:
        """None if `actual` is within budget of `oracle`, else a sentence about the worst element."""
        if actual.shape != oracle.shape:
            return f"shape {list(actual.shape)}, expected {list(oracle.shape)}"
        finite = np.isfinite(oracle)
        bad = finite & ~np.isfinite(actual)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            return f"{actual[idx]} at {list(idx)} where the oracle has {oracle[idx]}"
        allowed = SLACK * EPS32 * (self.length[name] + 1) * self.magnitude[name] + FLOOR
        error = np.where(finite, np.abs(actual.astype(np.float64) - oracle), 0.0)
        excess = error / allowed
        worst = np.unravel_index(int(np.argmax(excess)), excess.shape)
        if excess[worst] <= 1.0:
            return None
        idx = [int(i) for i in worst]
        return (f"off by {error[worst]:.3g} at {idx} (got {actual[worst]:.7g}, oracle {oracle[worst]:.7g}; "
                f"allowed {allowed[worst]:.3g} for magnitude {self.magnitude[name][worst]:.3g} "
                f"and {self.length[name]} roundings on the way)")


def node_budget(node: Node, operands: list[np.ndarray], types: list) -> Budget:
    """The budget of one node alone, its operands taken as exact: its own roundings over the
    magnitude of its operands. What a single kernel is held to."""
    distinct: dict[str, int] = {}
    for o in node.operands:
        distinct.setdefault(o, len(distinct))
    sources = [Node(f"a{i}", "input", (), {"name": f"a{i}"}, t) for (o, i), t in
               zip(distinct.items(), [types[node.operands.index(o)] for o in distinct])]
    single = Graph("node", sources + [node.with_(operands=tuple(f"a{distinct[o]}" for o in node.operands))],
                   {"out": node.name})
    values = {f"a{distinct[o]}": a for o, a in zip(node.operands, operands)}
    return Budget.of(single, values)
