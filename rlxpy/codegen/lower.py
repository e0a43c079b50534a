"""Lowering a graph in two phases: plan each node (no IR), then emit one LLVM module.

Planning runs each compute node's rules in plan mode (see `registry`): a rule declines, returns an
`Alias`, or reaches `define`, which records the kernel's extent, constants and baked data and stops
the rule. A node no rule takes runs on the interpreter, with the reasons. The plan, with the node
and the host, determines the generated code, so it keys the object cache (`key.module_key`) before
any IR exists; choosing rules and packing weights is cheap, emitting and printing IR is not.

Emission, needed only on a cache miss, runs each chosen rule again, to the end, into one module with
one function per native node. A rule that declines only after `define` (against the registry's
contract) is tolerated here: its function is dropped, the next rules are tried, and the result is
marked as deviating from the plan, so it is never stored under the plan's key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import llvmlite.ir as ir
import numpy as np

from ..errors import CodegenError
from ..ir.graph import Graph, Node
from ..ir.verify import where
from . import (lower_elementwise, lower_matmul, lower_matmul_channels_last, lower_matmul_nchw,  # noqa: F401
               lower_pos, lower_upsample)  # (imported to register their rules)
from .emit import KernelBuilder, Planned
from .key import rule_digest
from .registry import Alias, Kernel, Rule, Unsupported, rules_for
from .target import host, target_machine

SOURCES = ("input", "param", "const")


@dataclass(frozen=True)
class KernelPlan:
    """What a rule recorded at `define`: enough to key the cache and to run the kernel."""

    symbol: str
    extent: int
    constants: tuple[np.ndarray, ...] = field(default=(), compare=False)
    baked: dict[str, np.ndarray] = field(default_factory=dict, compare=False)
    source: str = ""                   # digest of the rule's source (see key.rule_digest)


@dataclass(frozen=True)
class Step:
    """What runs for one compute node."""

    node: Node
    kind: str                      # "native", "alias" or "interp"
    plan: KernelPlan | None = None # native: what planning recorded
    kernel: Kernel | None = None   # native: the kernel, once its cost is known (emitted or cached)
    alias: Alias | None = None
    rule: str = ""
    reason: str = ""               # why it runs on the interpreter
    declined: tuple[str, ...] = () # "rule: why" of each higher-priority rule that declined


@dataclass
class Emitted:
    ir_text: str
    steps: list[Step]               # with kernels (and costs)
    deviations: list[str]           # nodes whose emission did not follow the plan, and why


def symbol_for(graph: Graph, index: int, node: Node) -> str:
    clean = re.sub(r"[^A-Za-z0-9_]", "_", node.name)
    return f"rlx_{graph.name}_{index}_{node.op}_{clean}"


def fallbacks(steps: list[Step]) -> list[Step]:
    return [s for s in steps if s.kind == "interp"]


def plan_graph(graph: Graph) -> list[Step]:
    """Choose a rule for every compute node and record its kernel's plan; builds no IR."""
    steps = []
    for index, node in enumerate(graph.nodes):
        if node.op in SOURCES:
            if node.op == "param":
                raise CodegenError(f"{where(node)}: param '{node.attrs['name']}' is unbound; "
                                   f"compile() binds params before code generation")
            continue
        steps.append(_try_rules(None, graph, index, node, rules_for(node.op), []))
    return steps


def emit_module(graph: Graph, steps: list[Step]) -> Emitted:
    """Run each planned native step's rule to the end into one module; returns its IR text."""
    module = ir.Module(name=graph.name)
    module.triple = host().triple
    module.data_layout = str(target_machine().target_data)
    index_of = {n.name: i for i, n in enumerate(graph.nodes)}
    out, deviations = [], []
    for step in steps:
        if step.kind != "native":
            out.append(step)
            continue
        node = step.node
        rules = rules_for(node.op)
        first = next((i for i, r in enumerate(rules) if r.name == step.rule), None)
        if first is None:
            raise RuntimeError(f"{where(node)}: lowering rule {step.rule} was unregistered while compiling")
        done = _try_rules(module, graph, index_of[node.name], node, rules[first:], list(step.declined))
        if done.kind != "native" or done.rule != step.rule:
            deviations.append(f"{where(node)}: rule {step.rule} declined after define()")
        else:
            _check_same(node, step, done)
            done = replace(done, plan=step.plan, kernel=replace(done.kernel, constants=step.plan.constants))
        out.append(done)
    return Emitted(str(module), out, deviations)


def with_costs(steps: list[Step], costs: dict[str, float]) -> list[Step]:
    """The planned steps with their kernels, given each kernel's cost (from a cache entry)."""
    out = []
    for s in steps:
        if s.kind == "native" and s.kernel is None:
            p = s.plan
            s = replace(s, kernel=Kernel(p.symbol, p.extent, costs[p.symbol], p.constants, s.rule))
        out.append(s)
    return out


def _try_rules(module: ir.Module | None, graph: Graph, index: int, node: Node, rules: list[Rule],
               declined: list[str]) -> Step:
    """The first of `rules` that takes `node`: planned (module None) or emitted into `module`."""
    if not rules and not declined:
        return Step(node, "interp", reason=f"no LLVM lowering rule for op '{node.op}'")
    symbol = symbol_for(graph, index, node)
    for rule in rules:
        k = KernelBuilder(module, graph, node, symbol)
        before = set(module.globals) if module is not None else set()
        try:
            result = rule.fn(k)
        except Planned:
            return Step(node, "native", plan=_plan_of(k, rule), rule=rule.name, declined=tuple(declined))
        except Unsupported as e:
            if module is not None:
                _drop_globals(module, set(module.globals) - before)
            declined.append(f"{rule.name}: {e}")
            continue
        if isinstance(result, Alias):
            return Step(node, "alias", alias=result, rule=rule.name, declined=tuple(declined))
        if not isinstance(result, Kernel) or k.fn is None:
            raise TypeError(f"lowering rule {rule.name} for {where(node)} returned {result!r}, "
                            f"not the Kernel it defined or an Alias")
        return Step(node, "native", plan=_plan_of(k, rule), kernel=replace(result, rule=rule.name),
                    rule=rule.name, declined=tuple(declined))
    return Step(node, "interp", reason="every rule declined (" + "; ".join(declined) + ")")


def _plan_of(k: KernelBuilder, rule: Rule) -> KernelPlan:
    return KernelPlan(k.symbol, k.extent, k.constants, k.baked, rule_digest(rule.fn))


def _check_same(node: Node, planned: Step, emitted: Step) -> None:
    """A rule must decide the same way each time it runs: the cache key was made from its plan."""
    p, e = planned.plan, emitted.plan
    same = (p.extent == e.extent and len(p.constants) == len(e.constants)
            and all(a.shape == b.shape and a.dtype == b.dtype for a, b in zip(p.constants, e.constants))
            and p.baked.keys() == e.baked.keys()
            and all(np.array_equal(p.baked[n], e.baked[n]) for n in p.baked))
    if not same:
        raise CodegenError(f"{where(node)}: lowering rule {planned.rule} planned a kernel of extent {p.extent} "
                           f"with {len(p.constants)} constant(s) and baked {sorted(p.baked)}, but emitted "
                           f"extent {e.extent}, {len(e.constants)} constant(s), baked {sorted(e.baked)}: a rule "
                           f"must decide the same way every time it runs")


def _drop_globals(module: ir.Module, names: set[str]) -> None:
    """Forget what a rule that declined late added (its function, tables), names included.

    llvmlite has no public way to remove a global; its NameScope keeps used names in `_useset`.
    """
    for name in names:
        del module.globals[name]
        module.scope._useset.discard(name)
