"""Pointwise ops."""

from __future__ import annotations

import numpy as np

from ...ir.graph import Node
from . import rule


@rule("bias_add")
def bias_add(node: Node, x: np.ndarray, bias: np.ndarray) -> np.ndarray:
    axis = node.attrs["axis"] % x.ndim
    shape = [1] * x.ndim
    shape[axis] = bias.shape[0]
    return x + bias.reshape(shape)


def upsample2x_nearest(c: np.ndarray) -> np.ndarray:
    """out[..., i, j] = c[..., i // 2, j // 2]."""
    return np.repeat(np.repeat(c, 2, axis=-2), 2, axis=-1)


def _upsample2x_linear_axis(c: np.ndarray, axis: int) -> np.ndarray:
    """Exact x2 linear upsampling along one axis with align_corners=False.

    Output i samples the input at i/2 - 1/4, clamped at the borders, so even outputs are
    0.25*c[k-1] + 0.75*c[k] and odd outputs 0.75*c[k] + 0.25*c[k+1] (indices clamped).
    """
    n = c.shape[axis]
    k = np.arange(n)
    before = np.take(c, np.maximum(k - 1, 0), axis=axis)
    after = np.take(c, np.minimum(k + 1, n - 1), axis=axis)
    even = np.float32(0.25) * before + np.float32(0.75) * c
    odd = np.float32(0.75) * c + np.float32(0.25) * after
    out = np.stack([even, odd], axis=axis + 1)
    shape = list(c.shape)
    shape[axis] = 2 * n
    return out.reshape(shape)


def upsample2x_bilinear(c: np.ndarray) -> np.ndarray:
    return _upsample2x_linear_axis(_upsample2x_linear_axis(c, c.ndim - 2), c.ndim - 1)


@rule("upsample_add")
def upsample_add(node: Node, x: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    up = upsample2x_nearest if node.attrs["mode"] == "nearest" else upsample2x_bilinear
    return x + up(coarse)


@rule("scale")
def scale(node: Node, x: np.ndarray) -> np.ndarray:
    return x * np.float32(node.attrs["factor"])


@rule("relu")
def relu(node: Node, x: np.ndarray) -> np.ndarray:
    return np.maximum(x, np.float32(0))
