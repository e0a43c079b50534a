"""Ops computed from their attributes alone (a constant once folded)."""

from __future__ import annotations

from ..opdef import NULLARY, Attr, OpDef, OpTypeError, declare
from ..types import TensorType
from .shapes import result_of


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
