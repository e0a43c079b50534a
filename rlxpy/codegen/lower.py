"""Lowering a graph: one LLVM module with one function per compute node, and the list of steps.

Each compute node becomes a native kernel, an alias (a view of an operand's buffer), or, when no
rule handles it, an interpreter step with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import llvmlite.ir as ir

from ..errors import CodegenError
from ..ir.graph import Graph, Node
from ..ir.verify import where
from . import (lower_elementwise, lower_matmul, lower_matmul_channels_last, lower_matmul_nchw,  # noqa: F401
               lower_pos, lower_upsample)  # (imported to register their rules)
from .emit import KernelBuilder
from .registry import Alias, Kernel, Unsupported, rules_for
from .target import host, target_machine


@dataclass(frozen=True)
class Step:
    """What runs for one compute node."""

    node: Node
    kind: str                      # "native", "alias" or "interp"
    kernel: Kernel | None = None
    alias: Alias | None = None
    rule: str = ""
    reason: str = ""               # why it runs on the interpreter
    declined: tuple[str, ...] = () # "rule: why" of each higher-priority rule that declined


@dataclass
class LoweredGraph:
    module: ir.Module
    steps: list[Step]

    @property
    def kernels(self) -> list[Kernel]:
        return [s.kernel for s in self.steps if s.kind == "native"]

    @property
    def fallbacks(self) -> list[Step]:
        return [s for s in self.steps if s.kind == "interp"]


def symbol_for(graph: Graph, index: int, node: Node) -> str:
    clean = re.sub(r"[^A-Za-z0-9_]", "_", node.name)
    return f"rlx_{graph.name}_{index}_{node.op}_{clean}"


def lower_graph(graph: Graph) -> LoweredGraph:
    module = ir.Module(name=graph.name)
    tm = target_machine()
    module.triple = host().triple
    module.data_layout = str(tm.target_data)
    steps = []
    for index, node in enumerate(graph.nodes):
        if node.op in ("input", "param", "const"):
            if node.op == "param":
                raise CodegenError(f"{where(node)}: param '{node.attrs['name']}' is unbound; "
                                   f"compile() binds params before code generation")
            continue
        steps.append(_lower_node(module, graph, index, node))
    return LoweredGraph(module, steps)


def _lower_node(module: ir.Module, graph: Graph, index: int, node: Node) -> Step:
    rules = rules_for(node.op)
    if not rules:
        return Step(node, "interp", reason=f"no LLVM lowering rule for op '{node.op}'")
    declined = []
    for rule in rules:
        k = KernelBuilder(module, graph, node, symbol_for(graph, index, node))
        before = set(module.globals)
        try:
            result = rule.fn(k)
        except Unsupported as e:
            _drop_globals(module, set(module.globals) - before)
            declined.append(f"{rule.name}: {e}")
            continue
        if isinstance(result, Alias):
            return Step(node, "alias", alias=result, rule=rule.name, declined=tuple(declined))
        if not isinstance(result, Kernel) or k.fn is None:
            raise TypeError(f"lowering rule {rule.name} for {where(node)} returned {result!r}, "
                            f"not the Kernel it defined or an Alias")
        return Step(node, "native", kernel=result, rule=rule.name, declined=tuple(declined))
    return Step(node, "interp", reason="every rule declined (" + "; ".join(declined) + ")")


def _drop_globals(module: ir.Module, names: set[str]) -> None:
    """Forget what a rule that declined late added (its function, tables), names included.

    llvmlite has no public way to remove a global; its NameScope keeps used names in `_useset`.
    """
    for name in names:
        del module.globals[name]
        module.scope._useset.discard(name)
