"""Fused ops: the composition of the rules of the ops they were made from."""

from __future__ import annotations

import numpy as np

from ...ir.graph import Node
from ...ir.ops import Step, epilogue_operands
from . import RULES, rule
from .contraction import _matmul


@rule("fused_matmul")
def fused_matmul(node: Node, a: np.ndarray, b: np.ndarray, *extra: np.ndarray) -> np.ndarray:
    """The composition of the unfused ops' rules: matmul, the permutation, then each step."""
    y = _matmul(a, b)
    if node.attrs["perm"]:
        y = np.transpose(y, node.attrs["perm"])
    steps = node.attrs["epilogue"]
    for step, operands in zip(steps, epilogue_operands(steps, list(extra))):
        y = np.asarray(RULES[step.op](step_node(node, step), y, *operands), dtype=np.float32)
    return y


def step_node(node: Node, step: Step) -> Node:
    """An epilogue step as a node of its own (what its op's rule reads its attributes from)."""
    return Node(node.name, step.op, (), step.attributes, node.type, origin=node.origin)
