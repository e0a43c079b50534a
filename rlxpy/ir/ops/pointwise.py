"""Pointwise ops: result[i] from each operand read at i through its Access (the first operand is
the value the op acts on)."""

from __future__ import annotations

from ..opdef import ELEMENTWISE, POINTWISE, Access, Attr, OpDef, declare
from ..types import TensorType
from .shapes import bias_type, require_f32, upsample_add_type


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
