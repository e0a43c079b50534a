"""Layout: elements moved, nothing computed."""

from __future__ import annotations

import math

from ..opdef import LAYOUT, VIEW, Attr, OpDef, OpTypeError, declare
from ..types import TensorType, TypeLimitError, check_rank
from .shapes import _fmt, require_f32, result_of, transpose_type


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
