"""The op vocabulary, each op declared once: operands, attributes, type inference and verification.

An op is data (an `OpDef`), in the style of xDSL's declarative ops. Everything else finds ops by
name: the builder makes one method per op from these declarations, the verifier checks nodes
against them, and each backend registers its own rule for an op name (the interpreter in
`rlxpy.interp.rules`, the LLVM lowering in `rlxpy.codegen`). Adding an op means one declaration
here plus one rule per backend.

Type inference raises `OpTypeError` with a message that says what was expected; the verifier adds
the node's name to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .types import TensorType, TypeLimitError, check_rank

REQUIRED = object()  # marks an attribute without a default


class OpTypeError(ValueError):
    """An op's operands or attributes do not fit its declaration (the verifier names the node)."""


@dataclass(frozen=True)
class Attr:
    """An attribute: its kind (`int`, `float`, `bool`, `str`, `ints`), default and allowed values."""

    kind: str
    default: Any = REQUIRED
    choices: tuple = ()
    doc: str = ""

    def coerce(self, name: str, value: Any) -> Any:
        """Return `value` in canonical form (ints as tuples, ints widened to float), or raise."""
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
        if not ok:
            raise OpTypeError(f"attribute '{name}' must be {_KIND_WORDS[self.kind]}, got {value!r}")
        if self.choices and value not in self.choices:
            raise OpTypeError(
                f"attribute '{name}' must be one of {', '.join(map(repr, self.choices))}, got {value!r}"
            )
        return value


_KIND_WORDS = {
    "int": "an integer",
    "float": "a finite number",
    "bool": "true or false",
    "str": "a string",
    "ints": "a list of integers",
}


@dataclass(frozen=True)
class OpDef:
    """One op of the IR.

    `operands` names the operands in order; a trailing `*name` takes any number more.
    `kind` is `compute` for ops whose result type `infer` computes from operands and attributes,
    or `source` for `input`, `param` and `const`, whose type is declared on the node.
    """

    name: str
    summary: str
    operands: tuple[str, ...] = ()
    attrs: Mapping[str, Attr] = field(default_factory=dict)
    infer: Callable[[list[TensorType], dict], TensorType] | None = None
    kind: str = "compute"

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


OPS: dict[str, OpDef] = {}


def declare(op: OpDef) -> OpDef:
    if op.name in OPS:
        raise ValueError(f"op '{op.name}' is declared twice")
    OPS[op.name] = op
    return op


def get_op(name: str) -> OpDef | None:
    return OPS.get(name)


# ---------------------------------------------------------------------------------------------
# Shared type rules


def _fmt(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def result_of(shape: tuple[int, ...], what: str) -> TensorType:
    """An f32 result type, or an `OpTypeError` saying that `what` makes it too large."""
    try:
        return TensorType(tuple(shape))
    except TypeLimitError as e:
        raise OpTypeError(f"{what}: {e}") from None


def require_f32(types: list[TensorType], names: tuple[str, ...]) -> None:
    for t, name in zip(types, names):
        if t.dtype != "f32":
            raise OpTypeError(f"dtype mismatch: operand '{name}' is {t.dtype}, expected f32")


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        da = a[-i] if i <= len(a) else 1
        db = b[-i] if i <= len(b) else 1
        if da != db and 1 not in (da, db):
            raise OpTypeError(f"batch dimensions {_fmt(a)} and {_fmt(b)} do not broadcast")
        out.append(max(da, db))
    return tuple(reversed(out))


def matmul_type(a: TensorType, b: TensorType) -> TensorType:
    if a.rank < 2 or b.rank < 2:
        raise OpTypeError(f"operands must have rank >= 2, got {a} and {b}")
    (m, k), (k2, n) = a.shape[-2:], b.shape[-2:]
    if k != k2:
        raise OpTypeError(
            f"contraction mismatch: 'a' {a} has {k} columns but 'b' {b} has {k2} rows"
        )
    return result_of(_broadcast(a.shape[:-2], b.shape[:-2]) + (m, n), f"the product of {a} and {b}")


def bias_type(x: TensorType, bias: TensorType, axis: int) -> TensorType:
    if not -x.rank <= axis < x.rank:
        raise OpTypeError(f"axis {axis} is out of range for rank {x.rank}")
    want = x.shape[axis]
    if bias.shape != (want,):
        raise OpTypeError(f"'bias' must have shape [{want}] (axis {axis} of {x}), got {bias}")
    return x


def transpose_type(x: TensorType, perm: tuple[int, ...]) -> TensorType:
    if sorted(perm) != list(range(x.rank)):
        raise OpTypeError(f"perm {list(perm)} is not a permutation of 0..{x.rank - 1}")
    return TensorType(tuple(x.shape[p] for p in perm))


def upsample_add_type(x: TensorType, coarse: TensorType) -> TensorType:
    if x.rank < 2 or coarse.rank != x.rank:
        raise OpTypeError(f"operands must have the same rank >= 2, got {x} and {coarse}")
    want = x.shape[:-2] + (x.shape[-2] // 2, x.shape[-1] // 2)
    if x.shape[-2] % 2 or x.shape[-1] % 2 or coarse.shape != want:
        raise OpTypeError(
            f"'coarse' must be half of 'x' {x} in its last two dimensions, "
            f"expected shape {_fmt(want)} with even x dims, got {coarse}"
        )
    return x


# ---------------------------------------------------------------------------------------------
# Sources: values that come from outside the computation


INPUT = declare(OpDef(
    "input", "A run-time input, bound by name when the executable is called.",
    attrs={"name": Attr("str", doc="the keyword the caller passes it by")},
    kind="source",
))

PARAM = declare(OpDef(
    "param", "A named weight, bound when the graph is compiled (named by its checkpoint key).",
    attrs={"name": Attr("str", doc="the key in the params dict or checkpoint")},
    kind="source",
))

CONST = declare(OpDef(
    "const", "A compile-time constant tensor; its data is carried by the node.",
    kind="source",
))


# ---------------------------------------------------------------------------------------------
# Compute ops


def _infer_matmul(t: list[TensorType], a: dict) -> TensorType:
    require_f32(t, ("a", "b"))
    return matmul_type(t[0], t[1])


MATMUL = declare(OpDef(
    "matmul", "Matrix product over the last two axes; leading axes broadcast as in numpy.",
    operands=("a", "b"), infer=_infer_matmul,
))


def _infer_bias_add(t: list[TensorType], a: dict) -> TensorType:
    require_f32(t, ("x", "bias"))
    return bias_type(t[0], t[1], a["axis"])


BIAS_ADD = declare(OpDef(
    "bias_add", "Add a rank-1 bias along one axis.",
    operands=("x", "bias"), attrs={"axis": Attr("int", -1, doc="the axis of x that bias runs along")},
    infer=_infer_bias_add,
))


def _infer_upsample_add(t: list[TensorType], a: dict) -> TensorType:
    require_f32(t, ("x", "coarse"))
    return upsample_add_type(t[0], t[1])


UPSAMPLE_ADD = declare(OpDef(
    "upsample_add",
    "x + upsample2x(coarse) over the last two axes; nearest, or bilinear with align_corners=False.",
    operands=("x", "coarse"),
    attrs={"mode": Attr("str", "nearest", choices=("nearest", "bilinear"),
                        doc="nearest repeats each coarse value; bilinear uses align_corners=False")},
    infer=_infer_upsample_add,
))


def _infer_scale(t: list[TensorType], a: dict) -> TensorType:
    require_f32(t, ("x",))
    return t[0]


SCALE = declare(OpDef(
    "scale", "Multiply by a constant factor (the FPN's fuse_type 'avg' halves with it).",
    operands=("x",), attrs={"factor": Attr("float", doc="the multiplier")}, infer=_infer_scale,
))


def _infer_transpose(t: list[TensorType], a: dict) -> TensorType:
    require_f32(t, ("x",))
    return transpose_type(t[0], a["perm"])


TRANSPOSE = declare(OpDef(
    "transpose", "Permute the axes: result axis i is operand axis perm[i].",
    operands=("x",), attrs={"perm": Attr("ints", doc="a permutation of 0..rank-1")}, infer=_infer_transpose,
))


def _infer_reshape(t: list[TensorType], a: dict) -> TensorType:
    require_f32(t, ("x",))
    shape = a["shape"]
    try:
        check_rank(len(shape))
    except TypeLimitError as e:
        raise OpTypeError(f"attribute 'shape' has {len(shape)} dimensions: {e}") from None
    if any(d < 1 for d in shape):
        raise OpTypeError(f"shape {_fmt(shape)} must have positive dimensions")
    numel = math.prod(shape)
    if numel != t[0].numel:
        raise OpTypeError(
            f"cannot reshape {t[0]} ({t[0].numel} elements) to {_fmt(shape)} ({numel} elements)"
        )
    return result_of(shape, f"shape {_fmt(shape)}")


RESHAPE = declare(OpDef(
    "reshape", "Same elements in row-major order, new shape.",
    operands=("x",), attrs={"shape": Attr("ints", doc="the new shape, with as many elements as x")},
    infer=_infer_reshape,
))


def _infer_pos_encoding(t: list[TensorType], a: dict) -> TensorType:
    for key in ("batch", "dim", "height", "width"):
        if a[key] < 1:
            raise OpTypeError(f"attribute '{key}' must be positive, got {a[key]}")
    if a["dim"] % 4:
        raise OpTypeError(f"attribute 'dim' must be a multiple of 4 (sin/cos per axis), got {a['dim']}")
    if a["temperature"] <= 0:
        raise OpTypeError(f"attribute 'temperature' must be positive, got {a['temperature']}")
    size = ", ".join(f"{k} = {a[k]}" for k in ("batch", "dim", "height", "width"))
    return result_of((a["batch"], a["dim"], a["height"], a["width"]), f"attributes {{{size}}} make a result too large")


POS_ENCODING = declare(OpDef(
    "pos_encoding",
    "SAM 2's PositionEmbeddingSine (normalize=True, scale=2*pi) as NCHW [batch, dim, height, width]: "
    "channels 0..dim/2-1 encode the row, the rest the column, sin and cos interleaved.",
    attrs={
        "batch": Attr("int", doc="the batch size"),
        "dim": Attr("int", doc="the number of channels, a multiple of 4"),
        "height": Attr("int", doc="the feature map's height"),
        "width": Attr("int", doc="the feature map's width"),
        "temperature": Attr("float", 10000.0, doc="the base of the frequencies"),
    },
    infer=_infer_pos_encoding,
))


def _infer_fused_matmul(t: list[TensorType], a: dict) -> TensorType:
    names = ["a", "b"] + [f"epilogue.{i}" for i in range(len(t) - 2)]
    require_f32(t, tuple(names))
    want = 2 + int(a["bias"]) + int(a["upsample"] != "none")
    if len(t) != want:
        raise OpTypeError(
            f"with bias={a['bias']} and upsample={a['upsample']!r} it takes {want} operands "
            f"(a, b{', bias' if a['bias'] else ''}{', coarse' if a['upsample'] != 'none' else ''}), "
            f"got {len(t)}"
        )
    out = matmul_type(t[0], t[1])
    rest = list(t[2:])
    if a["bias"]:
        out = bias_type(out, rest.pop(0), -1)
    if a["perm"]:
        out = transpose_type(out, a["perm"])
    if a["upsample"] != "none":
        out = upsample_add_type(out, rest.pop(0))
    return out


FUSED_MATMUL = declare(OpDef(
    "fused_matmul",
    "matmul with an epilogue applied while the result is in registers, in this order: "
    "bias_add on the last axis (if bias), transpose by perm (if perm), upsample_add of a coarse "
    "operand (if upsample != 'none'), then scale by factor. Operands: a, b, [bias], [coarse].",
    operands=("a", "b", "*epilogue"),
    attrs={
        "bias": Attr("bool", False, doc="add the operand after a and b along the last axis"),
        "perm": Attr("ints", (), doc="transpose the result by this permutation (empty: no transpose)"),
        "upsample": Attr("str", "none", choices=("none", "nearest", "bilinear"),
                         doc="add the last operand upsampled 2x over the last two axes"),
        "factor": Attr("float", 1.0, doc="scale the result by this"),
    },
    infer=_infer_fused_matmul,
))
