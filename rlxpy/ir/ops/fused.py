"""Ops made by fusion passes from ops of the vocabulary."""

from __future__ import annotations

from ..opdef import CONTRACTION, FUSED, Attr, OpDef, OpTypeError, Step, declare
from ..types import TensorType
from .shapes import matmul_type, require_f32, transpose_type


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
