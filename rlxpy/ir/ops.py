"""The op vocabulary, each op declared once: operands, attributes, traits, type inference.

An op is data (an `OpDef`, see `opdef.py`), in the style of xDSL's declarative ops. Everything else
asks the declaration: the builder makes one method per op from it, the verifier checks nodes
against it, fusion reads its traits, and each backend registers its own rule for the op (the
interpreter in `rlxpy.interp.rules`, the LLVM lowering in `rlxpy.codegen`). Adding an op means one
declaration here plus one rule per backend (for a pointwise op, one emitter in
`rlxpy.codegen.emitters`, and it fuses and runs natively everywhere).

Type inference raises `OpTypeError` with a message that says what was expected; the verifier adds
the node's name to it.
"""

from __future__ import annotations

import math

from .opdef import (CONTRACTION, ELEMENTWISE, FUSED, LAYOUT, NULLARY, OPS, POINTWISE, REQUIRED, SOURCE,  # noqa: F401
                    TRAITS, VIEW, Access, Attr, OpDef, OpTypeError, Step, declare, get_op, with_trait)
from .types import TensorType, TypeLimitError, check_rank


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
    traits={SOURCE}, rounding=0,
))

PARAM = declare(OpDef(
    "param", "A named weight, bound when the graph is compiled (named by its checkpoint key).",
    attrs={"name": Attr("str", doc="the key in the params dict or checkpoint")},
    traits={SOURCE}, rounding=0,
))

CONST = declare(OpDef(
    "const", "A compile-time constant tensor; its data is carried by the node.",
    traits={SOURCE}, rounding=0,
))


# ---------------------------------------------------------------------------------------------
# Pointwise ops: the first operand is the value, the others are read through their Access


def _unary(t: list[TensorType], a: dict) -> TensorType:
    require_f32(t, ("x",))
    return t[0]


def _infer_bias_add(t: list[TensorType], a: dict) -> TensorType:
    require_f32(t, ("x", "bias"))
    return bias_type(t[0], t[1], a["axis"])


BIAS_ADD = declare(OpDef(
    "bias_add", "Add a rank-1 bias along one axis.",
    operands=("x", "bias"), attrs={"axis": Attr("int", -1, role="axis", doc="the axis the bias runs along")},
    infer=_infer_bias_add, traits={POINTWISE}, access=(ELEMENTWISE, Access("axis", "axis")),
))


def _infer_upsample_add(t: list[TensorType], a: dict) -> TensorType:
    require_f32(t, ("x", "coarse"))
    return upsample_add_type(t[0], t[1])


UPSAMPLE_ADD = declare(OpDef(
    "upsample_add",
    "x + upsample2x(coarse) over the last two axes; nearest, or bilinear with align_corners=False.",
    operands=("x", "coarse"),
    attrs={"mode": Attr("str", "nearest", choices=("nearest", "bilinear"), doc="nearest repeats each coarse value; bilinear uses align_corners=False")},
    infer=_infer_upsample_add, traits={POINTWISE}, access=(ELEMENTWISE, Access("upsample2x", "mode")),
))


SCALE = declare(OpDef(
    "scale", "Multiply by a constant factor (the FPN's fuse_type 'avg' halves with it).",
    operands=("x",), attrs={"factor": Attr("float", doc="the multiplier")},
    infer=_unary, traits={POINTWISE}, access=(ELEMENTWISE,),
))


RELU = declare(OpDef(
    "relu", "max(x, 0), elementwise (NaN stays NaN).",
    operands=("x",), infer=_unary, traits={POINTWISE}, access=(ELEMENTWISE,), rounding=0,
))


# ---------------------------------------------------------------------------------------------
# Layout: elements moved, nothing computed


def _infer_transpose(t: list[TensorType], a: dict) -> TensorType:
    require_f32(t, ("x",))
    return transpose_type(t[0], a["perm"])


TRANSPOSE = declare(OpDef(
    "transpose", "Permute the axes: result axis i is operand axis perm[i].",
    operands=("x",), attrs={"perm": Attr("ints", role="perm", doc="result axis i is operand axis perm[i]")},
    infer=_infer_transpose, traits={LAYOUT}, rounding=0,
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
    operands=("x",), attrs={"shape": Attr("ints", role="shape", doc="the result's shape")},
    infer=_infer_reshape, traits={LAYOUT, VIEW}, rounding=0,
))


# ---------------------------------------------------------------------------------------------
# Contraction


def _infer_matmul(t: list[TensorType], a: dict) -> TensorType:
    require_f32(t, ("a", "b"))
    return matmul_type(t[0], t[1])


def _contraction_length(t: list[TensorType], a: dict) -> int:
    return t[0].shape[-1]


MATMUL = declare(OpDef(
    "matmul", "Matrix product over the last two axes; leading axes broadcast as in numpy.",
    operands=("a", "b"), infer=_infer_matmul, traits={CONTRACTION}, rounding=_contraction_length,
))


# ---------------------------------------------------------------------------------------------
# Computed from attributes alone


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
        "batch": Attr("int", role="size", doc="the batch size"),
        "dim": Attr("int", role="size", doc="the number of channels, a multiple of 4"),
        "height": Attr("int", role="size", doc="the feature map's height"),
        "width": Attr("int", role="size", doc="the feature map's width"),
        "temperature": Attr("float", 10000.0, doc="the base of the frequencies"),
    },
    infer=_infer_pos_encoding, traits={NULLARY},
    rounding=8,            # sin/cos of an angle up to 2*pi, itself a product and a quotient
))


# ---------------------------------------------------------------------------------------------
# Made by fusion


def epilogue_operands(steps: tuple[Step, ...], extra: list) -> list[list]:
    """`extra` (the fused node's operands after a and b) split into each step's operands."""
    want = sum(s.extra_operands for s in steps)
    if len(extra) != want:
        names = ", ".join(f"{s.op}: {', '.join(s.opdef.fixed_operands[1:])}" for s in steps if s.extra_operands)
        raise OpTypeError(f"its epilogue takes {want} operand(s) after a and b ({names or 'none'}), "
                          f"got {len(extra)}")
    out, i = [], 0
    for s in steps:
        out.append(list(extra[i:i + s.extra_operands]))
        i += s.extra_operands
    return out


def apply_epilogue_types(value: TensorType, steps: tuple[Step, ...], extra: list[TensorType]) -> TensorType:
    """The type after each step (each must keep the value's type), or OpTypeError naming the step."""
    for i, (step, operands) in enumerate(zip(steps, epilogue_operands(steps, extra))):
        try:
            out = step.opdef.infer([value] + operands, step.attributes)
        except OpTypeError as e:
            raise OpTypeError(f"epilogue step {i} ({step.op}): {e}") from None
        if out != value:
            raise OpTypeError(f"epilogue step {i} ({step.op}) turns {value} into {out}; "
                              f"an epilogue step must keep the value's type")
    return value


def _infer_fused_matmul(t: list[TensorType], a: dict) -> TensorType:
    names = ["a", "b"] + [f"extra.{i}" for i in range(len(t) - 2)]
    require_f32(t, tuple(names))
    out = matmul_type(t[0], t[1])
    if a["perm"]:
        out = transpose_type(out, a["perm"])
    return apply_epilogue_types(out, a["epilogue"], list(t[2:]))


_UPGRADE = ("bias, upsample and factor are now steps of the epilogue, applied to the stored (permuted) "
            "result in order: write {perm = [...], epilogue = [bias_add {axis = A}, upsample_add {mode = "
            "\"nearest\"}, scale {factor = F}]} keeping only the steps you had, with A the axis the "
            "matmul's last axis is stored at (perm.index(rank - 1); 1 for perm [0, 3, 1, 2])")


def _fused_roundings(t: list[TensorType], a: dict) -> int:
    total = t[0].shape[-1]
    for step, operands in zip(a["epilogue"], epilogue_operands(a["epilogue"], list(t[2:]))):
        total += step.opdef.roundings([t[0]] + operands, step.attributes)
    return total


FUSED_MATMUL = declare(OpDef(
    "fused_matmul",
    "matmul, its result permuted by perm (the layout it is stored in), then each pointwise step "
    "of the epilogue applied in order while the result is in registers. Operands: a, b, then each "
    "step's operands after its first, in order.",
    operands=("a", "b", "*extra"),
    attrs={
        "perm": Attr("ints", (), role="perm", doc="layout of the stored result (empty: as computed)"),
        "epilogue": Attr("steps", (), doc="pointwise ops applied in order, on the stored layout"),
    },
    infer=_infer_fused_matmul, traits={CONTRACTION, FUSED}, rounding=_fused_roundings,
    retired={name: _UPGRADE for name in ("bias", "upsample", "factor")},
))
