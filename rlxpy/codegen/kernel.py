"""What selection decides for each compute node, one record per node from selection to runtime:

    Kernel    native code: the rule, its Spec (what the code depends on: the cache key), the
              kernel's symbol and the arrays it gets by pointer
    Alias     no code: the result is an operand's buffer under another shape
    Fallback  the interpreter runs it, and why

Each keeps the reasons of the rules that declined it before (`declined`), for the report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..ir.graph import Graph, Node
from .rule import Rule, Spec


@dataclass(frozen=True)
class Kernel:
    node: Node
    rule: str                      # the rule's name
    lowering: Rule = field(repr=False)
    spec: Spec
    symbol: str
    constants: tuple[np.ndarray, ...] = field(default=(), repr=False)
    declined: tuple[str, ...] = ()
    source: str = ""               # what identifies the rule's code (see key.rule_digest)
    kind = "native"

    @property
    def extent(self) -> int:
        return self.spec.extent

    @property
    def cost(self) -> float:
        return self.spec.cost



@dataclass(frozen=True)
class Alias:
    node: Node
    operand: int
    rule: str
    declined: tuple[str, ...] = ()
    kind = "alias"


@dataclass(frozen=True)
class Fallback:
    node: Node
    reason: str
    declined: tuple[str, ...] = ()
    kind = "interp"
    rule = ""


Step = Kernel | Alias | Fallback


def symbol_for(graph: Graph, index: int, node: Node) -> str:
    clean = re.sub(r"[^A-Za-z0-9_]", "_", node.name)
    return f"rlx_{graph.name}_{index}_{node.op}_{clean}"
