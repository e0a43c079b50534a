"""What a lowering rule is: `match` a node to a `Spec` (cheap, no IR), then `emit` code from it.

    class ScaleLoop(Rule):
        name = "scale_loop"
        ops = ("scale",)

        def match(self, node, graph, target):
            if node.type.rank > 4:
                raise Unsupported("rank > 4")              # or return Unsupported(...)
            return ScaleSpec(extent=node.type.numel, cost=1, operands=1, factor=node.attrs["factor"])

        def emit(self, spec, k):                           # k: a KernelBuilder, function created
            with k.parallel_loop() as i:
                k.store(k.b.fmul(k.load(k.ins[0], i), k.f32(spec.factor)), k.out, i)

`match` decides everything the code depends on (tile shapes, flags, the epilogue, shapes) and puts
it in a frozen `Spec`; `emit` may read nothing else. So the Spec's fields are the object cache's
key (with the rule's identity and the host), and a compile that hits the cache builds no IR.
`match` may return `Alias(operand)` instead: the result is that operand's buffer under the node's
shape, with no code. A rule that cannot take the node says why with `Unsupported`; the next rule
is tried, and a node no rule takes runs on the interpreter, with the reasons in the report.
`constants` gives arrays prepared at compile time (packed weights) that the kernel receives by
pointer after its operands: their values are not in the code, so they are not in the key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..ir.graph import Graph, Node
from ..ir.ops import OPS, OpDef

if TYPE_CHECKING:
    from .emit.builder import KernelBuilder
    from .isa import VectorISA


class Unsupported(Exception):
    """A rule declines a node (e.g. a shape it does not handle); the message says why."""


@dataclass(frozen=True, kw_only=True)
class Spec:
    """What a kernel's code depends on. Rules subclass it with their own fields (frozen, made of
    ints, floats, strings, bools, tuples, Steps and other frozen dataclasses of these)."""

    extent: int          # iterations of the kernel's parallel loop (split across threads)
    cost: float          # work of one iteration (flops or elements): whether splitting pays
    operands: int        # pointer operands: the node's operands, in order
    constants: int = 0   # pointer constants after them (see Rule.constants)


@dataclass(frozen=True)
class Alias:
    """Returned by `match`: the result is operand `operand`'s buffer seen with the node's shape, no
    code and no copy (safe because no kernel ever writes into its operands)."""

    operand: int = 0


class Rule:
    """A lowering rule. Subclasses set `name`, the ops they lower (`ops`, by name) or a trait all
    their ops have (`trait`), and `priority` (higher is tried first)."""

    name: ClassVar[str] = ""
    ops: ClassVar[tuple[str, ...]] = ()
    trait: ClassVar[str] = ""
    priority: ClassVar[int] = 0

    def applies_to(self, opdef: OpDef) -> bool:
        return opdef.name in self.ops or (bool(self.trait) and opdef.has(self.trait))

    def match(self, node: Node, graph: Graph, target: "VectorISA") -> Spec | Alias | Unsupported:
        raise NotImplementedError(f"rule {self.name} has no match()")

    def emit(self, spec: Spec, k: "KernelBuilder") -> None:
        raise NotImplementedError(f"rule {self.name} has no emit()")

    def constants(self, spec: Spec, node: Node, graph: Graph) -> tuple[np.ndarray, ...]:
        """Read-only float32 arrays passed to the kernel after its operands (`spec.constants` of them)."""
        return ()

    def __repr__(self) -> str:
        return f"<rule {self.name}>"


class Registry:
    """The lowering rules, in priority order per op. `overrides` replaces the rules of one op
    (tests plant a wrong kernel with it; an empty list means no native rule)."""

    def __init__(self) -> None:
        self._rules: list[Rule] = []
        self.overrides: dict[str, list[Rule]] = {}

    def add(self, rule: Rule) -> Rule:
        if not rule.name:
            raise ValueError(f"{type(rule).__name__}: a rule needs a name")
        if not rule.ops and not rule.trait:
            raise ValueError(f"rule {rule.name}: give the ops it lowers or a trait")
        for op in rule.ops:
            if op not in OPS:
                raise ValueError(f"rule {rule.name}: lowers unknown op '{op}'")
            if OPS[op].is_source:
                raise ValueError(f"rule {rule.name}: op '{op}' is a source: it has no code to lower")
            if any(r.name == rule.name and op in r.ops for r in self._rules):
                raise ValueError(f"two lowering rules named '{rule.name}' for op '{op}'")
        self._rules.append(rule)
        self._rules.sort(key=lambda r: -r.priority)      # stable: equal priorities keep their order
        return rule

    def for_op(self, op: str) -> list[Rule]:
        if op in self.overrides:
            return list(self.overrides[op])
        opdef = OPS[op]
        return [r for r in self._rules if r.applies_to(opdef)]

    def __iter__(self):
        return iter(self._rules)


RULES = Registry()


def spec_key(spec: object) -> str:
    """A canonical text of a Spec (or any of its fields): equal specs give equal texts and unequal
    specs unequal ones, on every run. A field of a type that has no stable text is an error."""
    if isinstance(spec, bool) or spec is None:
        return repr(spec)
    if isinstance(spec, int):
        return str(spec)
    if isinstance(spec, float):
        return spec.hex()
    if isinstance(spec, str):
        return repr(spec)
    if isinstance(spec, (tuple, list)):
        return "(" + ", ".join(spec_key(v) for v in spec) + ")"
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        fields = ", ".join(f"{f.name}={spec_key(getattr(spec, f.name))}" for f in dataclasses.fields(spec))
        return f"{type(spec).__name__}({fields})"
    raise TypeError(f"a Spec field holds a {type(spec).__name__}, which has no stable key; "
                    f"use ints, floats, strings, bools, tuples or frozen dataclasses of them")
