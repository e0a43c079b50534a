"""Contraction: sums of products."""

from __future__ import annotations

from ..opdef import CONTRACTION, OpDef, declare
from ..types import TensorType
from .shapes import matmul_type, require_f32


def _infer_matmul(t: list[TensorType], a: dict) -> TensorType:
    require_f32(t, ("a", "b"))
    return matmul_type(t[0], t[1])


def _contraction_length(t: list[TensorType], a: dict) -> int:
    return t[0].shape[-1]


MATMUL = declare(OpDef(
    "matmul", "Matrix product over the last two axes; leading axes broadcast as in numpy.",
    operands=("a", "b"), infer=_infer_matmul, traits={CONTRACTION}, rounding=_contraction_length,
))
