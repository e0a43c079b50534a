"""How an op is declared: its operands, attributes, traits and type rule, as data (`OpDef`).

Everything other layers need to know about an op is asked of its declaration, never of its name:
the verifier checks nodes against it, the builder makes a method from it, fusion reads its traits
and operand accesses, the tolerance model its rounding, the random-graph generator and the reducer
its attributes' roles. The declarations themselves are in `ops.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .types import TensorType, TypeLimitError

REQUIRED = object()  # marks an attribute without a default


class OpTypeError(ValueError):
    """An op's operands or attributes do not fit its declaration (the verifier names the node)."""


# -- traits: what an op is ----------------------------------------------------------------------

SOURCE = "source"            # input, param, const: the graph's interface and data, computed by nothing
POINTWISE = "pointwise"      # result[i] reads each operand at i through that operand's Access
LAYOUT = "layout"            # moves elements, computes nothing (exact)
VIEW = "view"                # a layout op that keeps row-major order: the result may alias its operand
CONTRACTION = "contraction"  # sums products over an axis (matmul)
NULLARY = "nullary"          # computed from attributes alone (its value is a constant once folded)
FUSED = "fused"              # made by a fusion pass from ops of the vocabulary
COMMUTATIVE = "commutative"  # a binary op whose two operands may be swapped
REDUCTION = "reduction"      # combines the elements of its first operand along axes
COMPOSITE = "composite"      # one call for what other ops could spell (softmax, attention): kept whole
TRAITS = (SOURCE, POINTWISE, LAYOUT, VIEW, CONTRACTION, NULLARY, FUSED, COMMUTATIVE, REDUCTION, COMPOSITE)


@dataclass(frozen=True)
class Access:
    """How a pointwise op reads one operand at the result's element i (coordinates `o`).

    elementwise   operand[o] (the operand has the result's shape)
    axis          a rank-1 operand at o[attrs[attr]] (a bias along one axis)
    upsample2x    a half-size operand (last two axes) upsampled 2x at o, by attrs[attr]
                  ("nearest", or "bilinear" with align_corners=False)
    """

    kind: str
    attr: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("elementwise", "axis", "upsample2x"):
            raise ValueError(f"unknown operand access {self.kind!r}")


ELEMENTWISE = Access("elementwise")


# What an op's rounding error scales with, for the tolerance model (rlxpy.numerics):
#   rule       |rule(|operands|)|: the op evaluated on magnitudes (sums, products, matmuls)
#   operands   the sum of its operands' magnitudes, broadcast (a difference: |a| + |b|, not |a| - |b|)
#   first      its first operand's magnitude (sin, cos: the error follows the argument's)
# or a function (attrs, operand magnitudes) -> the result's magnitude, for an op whose error scale
# needs its own structure (attention: the largest value times the largest score it exponentiates).
MAGNITUDES = ("rule", "operands", "first")


# -- attributes ---------------------------------------------------------------------------------

# What an integer attribute means, for the layers that rewrite shapes (the reducer) or invent
# attributes (the random-graph generator): an axis of the op's first operand, a list of them, a
# permutation of its axes, a result shape, a size (a dimension of the result), or a list with one
# entry per axis of the first operand (slice starts, pad widths).
ROLES = ("", "axis", "axes", "perm", "shape", "size", "per_axis")


@dataclass(frozen=True)
class Attr:
    """An attribute: its kind (`int`, `float`, `bool`, `str`, `ints`, `steps`), default, allowed
    values, what it means (`role`) and a line of documentation."""

    kind: str
    default: Any = REQUIRED
    choices: tuple = ()
    doc: str = ""
    role: str = ""

    def __post_init__(self) -> None:
        if self.kind not in _KIND_WORDS:
            raise ValueError(f"unknown attribute kind {self.kind!r}")
        if self.role not in ROLES:
            raise ValueError(f"unknown attribute role {self.role!r}")

    def coerce(self, name: str, value: Any) -> Any:
        """Return `value` in canonical form (ints as tuples, ints widened to float), or raise.
        An attribute whose default is None is optional: None leaves it unset."""
        if value is None and self.default is None:
            return None
        ok = True
        if self.kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif self.kind == "float":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok:
                value = float(value)
                ok = math.isfinite(value)
        elif self.kind == "bool":
            ok = isinstance(value, bool)
        elif self.kind == "str":
            ok = isinstance(value, str)
        elif self.kind == "ints":
            ok = isinstance(value, (list, tuple)) and all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            )
            if ok:
                value = tuple(int(v) for v in value)
        elif self.kind == "steps":
            return coerce_steps(name, value)
        if not ok:
            raise OpTypeError(f"attribute '{name}' must be {_KIND_WORDS[self.kind]}, got {value!r}")
        if self.choices and value not in self.choices:
            raise OpTypeError(
                f"attribute '{name}' must be one of {', '.join(map(repr, self.choices))}, got {value!r}"
            )
        return value

    def describe(self) -> str:
        """`int (axis), default -1` / `str, one of 'nearest', 'bilinear'; required`: for docs."""
        text = _KIND_NAMES[self.kind] + (f" ({self.role})" if self.role else "")
        if self.choices:
            text += ", one of " + ", ".join(map(repr, self.choices))
        text += "; required" if self.default is REQUIRED else f", default {self.default!r}"
        return text + (f": {self.doc}" if self.doc else "")


_KIND_WORDS = {
    "int": "an integer",
    "float": "a finite number",
    "bool": "true or false",
    "str": "a string",
    "ints": "a list of integers",
    "steps": "a list of pointwise ops with their attributes",
}
_KIND_NAMES = {"int": "int", "float": "float", "bool": "bool", "str": "str", "ints": "list of int",
               "steps": "list of steps"}


# -- the op -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpDef:
    """One op of the IR.

    `operands` names the operands in order; a trailing `*name` takes any number more. `infer`
    computes the result type from the operand types and the (canonical) attributes; a source op
    has none, its type is declared on the node. `traits` say what the op is (see TRAITS);
    a pointwise op gives one `Access` per fixed operand. `rounding` is how many float32 roundings
    (each up to one epsilon of the result's magnitude) its result may carry beyond its operands'
    (an int, or a function of the operand types and attributes): the tolerance model adds them up.
    `magnitude` says what that epsilon is relative to (see MAGNITUDES).
    """

    name: str
    summary: str
    operands: tuple[str, ...] = ()
    attrs: Mapping[str, Attr] = field(default_factory=dict)
    infer: Callable[[list[TensorType], dict], TensorType] | None = None
    traits: frozenset[str] = frozenset()
    access: tuple[Access, ...] = ()
    rounding: int | Callable[[list[TensorType], dict], int] = 1
    magnitude: str | Callable[[dict, list], Any] = "rule"   # the scale of its rounding error: see MAGNITUDES
    retired: Mapping[str, str] = field(default_factory=dict)   # attribute -> how to write it now

    def __post_init__(self) -> None:
        object.__setattr__(self, "traits", frozenset(self.traits))
        unknown = self.traits - set(TRAITS)
        if unknown:
            raise ValueError(f"op '{self.name}': unknown trait(s) {sorted(unknown)}")
        if POINTWISE in self.traits and len(self.access) != len(self.fixed_operands):
            raise ValueError(f"op '{self.name}': a pointwise op gives one Access per operand")
        if not callable(self.magnitude) and self.magnitude not in MAGNITUDES:
            raise ValueError(f"op '{self.name}': unknown magnitude {self.magnitude!r}")
        if (self.infer is None) != (SOURCE in self.traits):
            raise ValueError(f"op '{self.name}': a source op has no type rule, every other op has one")

    def has(self, trait: str) -> bool:
        return trait in self.traits

    @property
    def is_source(self) -> bool:
        return SOURCE in self.traits

    @property
    def is_interface(self) -> bool:
        """A source bound by name from outside the graph (an input or a param)."""
        return SOURCE in self.traits and "name" in self.attrs

    @property
    def variadic(self) -> bool:
        return bool(self.operands) and self.operands[-1].startswith("*")

    @property
    def fixed_operands(self) -> tuple[str, ...]:
        return self.operands[:-1] if self.variadic else self.operands

    def check_arity(self, count: int) -> None:
        fixed = len(self.fixed_operands)
        if count == fixed or (self.variadic and count > fixed):
            return
        want = f"at least {fixed}" if self.variadic else str(fixed)
        names = ", ".join(self.operands) or "none"
        raise OpTypeError(f"takes {want} operand(s) ({names}), got {count}")

    def normalize_attrs(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        """Check attribute names and values and fill in defaults."""
        unknown = sorted(set(attrs) - set(self.attrs))
        if unknown:
            if unknown[0] in self.retired:
                raise OpTypeError(f"attribute '{unknown[0]}' was retired: {self.retired[unknown[0]]}")
            known = ", ".join(self.attrs) or "none"
            raise OpTypeError(f"unknown attribute '{unknown[0]}' (this op's attributes: {known})")
        out = {}
        for name, spec in self.attrs.items():
            if name in attrs:
                out[name] = spec.coerce(name, attrs[name])
            elif spec.default is REQUIRED:
                raise OpTypeError(f"missing required attribute '{name}' ({_KIND_WORDS[spec.kind]})")
            else:
                out[name] = spec.default
        return out

    def result_type(self, types: list[TensorType], attrs: dict) -> TensorType:
        """The inferred result type of a compute op; a result over the size limit is an
        `OpTypeError` like any other (each rule words its own where it can say more)."""
        try:
            return self.infer(types, attrs)
        except TypeLimitError as e:
            raise OpTypeError(f"the result is too large: {e}") from None

    def roundings(self, types: list[TensorType], attrs: Mapping[str, Any]) -> int:
        return self.rounding(types, dict(attrs)) if callable(self.rounding) else self.rounding


OPS: dict[str, OpDef] = {}


def declare(op: OpDef) -> OpDef:
    if op.name in OPS:
        raise ValueError(f"op '{op.name}' is declared twice")
    OPS[op.name] = op
    return op


def get_op(name: str) -> OpDef | None:
    return OPS.get(name)


def with_trait(trait: str) -> list[OpDef]:
    """Every declared op with `trait`, in declaration order."""
    return [op for op in OPS.values() if trait in op.traits]


# -- steps: pointwise ops applied in order, as one attribute (an epilogue) -----------------------


@dataclass(frozen=True)
class Step:
    """One pointwise op of an epilogue: its name and canonical attributes. Its first operand is the
    value so far; it takes its other operands, in order, from the fused node's extra operands."""

    op: str
    attrs: tuple[tuple[str, Any], ...] = ()

    @property
    def opdef(self) -> OpDef:
        return OPS[self.op]

    @property
    def attributes(self) -> dict[str, Any]:
        return dict(self.attrs)

    @property
    def extra_operands(self) -> int:
        return len(self.opdef.fixed_operands) - 1

    @staticmethod
    def of(op: str, **attrs: Any) -> "Step":
        """A step with its attributes checked and defaults filled in."""
        return coerce_steps("step", [(op, attrs)])[0]


def coerce_steps(name: str, value: Any) -> tuple[Step, ...]:
    """Canonical steps from Steps or (op, attrs) pairs; every op pointwise, attributes valid."""
    if not isinstance(value, (list, tuple)):
        raise OpTypeError(f"attribute '{name}' must be {_KIND_WORDS['steps']}, got {value!r}")
    steps = []
    for i, item in enumerate(value):
        if isinstance(item, Step):
            op, attrs = item.op, item.attributes
        elif isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str) \
                and isinstance(item[1], Mapping):
            op, attrs = item
        else:
            raise OpTypeError(f"attribute '{name}': step {i} must be a Step or (op, attrs), got {item!r}")
        opdef = OPS.get(op)
        if opdef is None:
            raise OpTypeError(f"attribute '{name}': step {i}: unknown op '{op}'")
        if POINTWISE not in opdef.traits or opdef.variadic:
            raise OpTypeError(f"attribute '{name}': step {i}: '{op}' is not a pointwise op")
        try:
            canonical = opdef.normalize_attrs(attrs)
        except OpTypeError as e:
            raise OpTypeError(f"attribute '{name}': step {i} ({op}): {e}") from None
        steps.append(Step(op, tuple(canonical.items())))
    return tuple(steps)
