"""Ops computed from their attributes alone."""

from __future__ import annotations

import math
import weakref

import numpy as np

from ...ir.graph import Node
from . import rule


_ENCODINGS: "weakref.WeakValueDictionary[tuple, np.ndarray]" = weakref.WeakValueDictionary()


def sine_position_encoding(batch: int, dim: int, height: int, width: int,
                           temperature: float = 10000.0) -> np.ndarray:
    """SAM 2's PositionEmbeddingSine(dim, normalize=True, scale=2*pi), NCHW, read-only.

    The angles and their sin/cos are computed in float64 per row and per column (the encoding is
    separable), then broadcast. The array is shared while anyone holds it: it is a pure function
    of its arguments, and at 1024x1024 it is the largest constant the neck has.
    """
    key = (batch, dim, height, width, float(temperature))
    cached = _ENCODINGS.get(key)
    if cached is not None:
        return cached
    feats = dim // 2                                           # per axis
    k = np.arange(feats)
    dim_t = temperature ** (2 * (k // 2) / feats)
    rows = np.arange(1, height + 1) / (height + 1e-6) * (2 * math.pi)
    cols = np.arange(1, width + 1) / (width + 1e-6) * (2 * math.pi)

    def encode(pos: np.ndarray) -> np.ndarray:                 # [feats, len], sin/cos interleaved
        angle = pos[None, :] / dim_t[:, None]
        return np.where(k[:, None] % 2 == 0, np.sin(angle), np.cos(angle)).astype(np.float32)

    out = np.empty((batch, dim, height, width), np.float32)
    out[:, :feats] = encode(rows)[:, :, None]
    out[:, feats:] = encode(cols)[:, None, :]
    out.setflags(write=False)
    _ENCODINGS[key] = out
    return out


@rule("pos_encoding")
def pos_encoding(node: Node) -> np.ndarray:
    a = node.attrs
    return sine_position_encoding(a["batch"], a["dim"], a["height"], a["width"], a["temperature"])
