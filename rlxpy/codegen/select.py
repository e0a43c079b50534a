"""Selection: for every compute node, the first rule whose `match` takes it, before any IR exists.

Rules are tried in priority order (see `rules`); a rule that declines says why, and a node no rule
takes becomes a `Fallback` that the interpreter runs, with every reason. Matching is cheap and
deterministic, so the selection keys the object cache (`key.module_key`) and a hit builds no IR.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import CodegenError
from ..ir.graph import Graph, Node
from ..ir.ops import OPS
from ..ir.verify import where
from .isa import VectorISA
from .kernel import Alias, Fallback, Kernel, Step, symbol_for
from .key import rule_digest
from .rule import RULES, Alias as AliasMatch, Registry, Rule, Spec, Unsupported, spec_key


def select(graph: Graph, target: VectorISA, rules: Registry = RULES) -> list[Step]:
    """One record per compute node of `graph` (params must be bound), in node order."""
    steps: list[Step] = []
    for index, node in enumerate(graph.nodes):
        if OPS[node.op].is_source:
            if node.op == "param":
                raise CodegenError(f"{where(node)}: param '{node.attrs['name']}' is unbound; "
                                   f"compile() binds params before code generation")
            continue
        steps.append(_select_node(graph, index, node, rules.for_op(node.op), target))
    return steps


def _select_node(graph: Graph, index: int, node: Node, rules: list[Rule], target: VectorISA) -> Step:
    if not rules:
        return Fallback(node, f"no LLVM lowering rule for op '{node.op}'")
    declined: list[str] = []
    for rule in rules:
        try:
            result = rule.match(node, graph, target)
        except Unsupported as e:
            result = e
        if isinstance(result, Unsupported):
            declined.append(f"{rule.name}: {result}")
            continue
        if isinstance(result, AliasMatch):
            return Alias(node, result.operand, rule.name, tuple(declined))
        if not isinstance(result, Spec):
            raise TypeError(f"lowering rule {rule.name} for {where(node)} matched {result!r}, "
                            f"not a Spec, an Alias or Unsupported")
        _check_spec(rule, node, result)
        constants = tuple(rule.constants(result, node, graph))
        if len(constants) != result.constants or not all(
                isinstance(c, np.ndarray) and c.dtype == np.float32 for c in constants):
            raise TypeError(f"lowering rule {rule.name} for {where(node)}: its Spec declares "
                            f"{result.constants} constant(s), constants() gave {len(constants)} "
                            f"(they must be float32 arrays)")
        return Kernel(node, rule.name, rule, result, symbol_for(graph, index, node), constants, tuple(declined),
                      rule_digest(type(rule)))
    return Fallback(node, "every rule declined (" + "; ".join(declined) + ")", tuple(declined))


def _check_spec(rule: Rule, node: Node, spec: Spec) -> None:
    if not dataclasses.is_dataclass(spec) or not type(spec).__dataclass_params__.frozen:
        raise TypeError(f"lowering rule {rule.name}: its Spec {type(spec).__name__} must be a frozen dataclass")
    if spec.operands != len(node.operands):
        raise TypeError(f"lowering rule {rule.name} for {where(node)}: Spec.operands is {spec.operands}, "
                        f"the node has {len(node.operands)}")
    if isinstance(spec.extent, bool) or not isinstance(spec.extent, int) or spec.extent < 0:
        raise TypeError(f"lowering rule {rule.name} for {where(node)}: extent {spec.extent!r} is not a count")
    spec_key(spec)                      # every field must have a stable key


def fallbacks(steps: list[Step]) -> list[Fallback]:
    return [s for s in steps if isinstance(s, Fallback)]
