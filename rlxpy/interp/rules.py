"""The numpy meaning of every op: the reference every backend is checked against.

One rule per op name, registered with `@rule`. A rule receives the node (for its attributes) and
its operands' arrays, and returns the result as float32. Rules favour the obvious formulation over
the fast one: this is the definition of each op, not an implementation to tune.
"""

from __future__ import annotations

import math
import weakref
from typing import Callable

import numpy as np

from ..ir.graph import Node
from ..ir.ops import Step, epilogue_operands

Rule = Callable[..., np.ndarray]
RULES: dict[str, Rule] = {}
VIEWS: set[str] = set()          # ops whose rule returns a view of its operand (no new array)


def rule(opname: str, *, view: bool = False) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        if opname in RULES:
            raise ValueError(f"two interpreter rules for op '{opname}'")
        RULES[opname] = fn
        if view:
            VIEWS.add(opname)
        return fn
    return register


@rule("matmul")
def matmul(node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _matmul(a, b)


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if b.ndim == 2:  # one big GEMM instead of numpy's loop over a's leading axes
        return (a.reshape(-1, a.shape[-1]) @ b).reshape(a.shape[:-1] + b.shape[-1:])
    return np.matmul(a, b)


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


@rule("transpose", view=True)
def transpose(node: Node, x: np.ndarray) -> np.ndarray:
    return np.transpose(x, node.attrs["perm"])


@rule("reshape", view=True)
def reshape(node: Node, x: np.ndarray) -> np.ndarray:
    return np.reshape(x, node.attrs["shape"])


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


@rule("fused_matmul")
def fused_matmul(node: Node, a: np.ndarray, b: np.ndarray, *extra: np.ndarray) -> np.ndarray:
    """The composition of the unfused ops' rules: matmul, the permutation, then each step."""
    y = _matmul(a, b)
    if node.attrs["perm"]:
        y = np.transpose(y, node.attrs["perm"])
    steps = node.attrs["epilogue"]
    for step, operands in zip(steps, epilogue_operands(steps, list(extra))):
        y = np.asarray(RULES[step.op](step_node(node, step), y, *operands), dtype=np.float32)
    return y


def step_node(node: Node, step: Step) -> Node:
    """An epilogue step as a node of its own (what its op's rule reads its attributes from)."""
    return Node(node.name, step.op, (), step.attributes, node.type, origin=node.origin)
