"""Attention: softmax(q k^T * scale) v over the last two axes, kept whole as one composite op so
that a kernel can fuse it (online softmax: the score matrix is never written).

Shapes: q [..., Lq, D], k [..., Lk, D], v [..., Lk, Dv] -> [..., Lq, Dv]. The leading (batch and
head) axes of the three operands broadcast together as numpy's do (as matmul's leading axes do),
so keys and values shared by every head (multi-query attention: k, v [B, 1, Lk, D]) need no copy.
`scale` defaults to 1/sqrt(D), torch's `scaled_dot_product_attention` default.
"""

from __future__ import annotations

import math

import numpy as np

from ..opdef import COMPOSITE, OPS, Attr, OpDef, OpTypeError, declare
from ..types import TensorType
from .shapes import _fmt, require_f32, result_of

# The tolerance contract of every attention kernel: one that keeps running sums over blocks of
# keys (online softmax) rescales them at most once per this many keys.
KEYS_PER_RESCALE = 16
EXP_ROUNDINGS = 2            # until an `exp` op declares its own bound (llvm.exp, numpy: < 1 ulp each)


def attention_scale(attrs: dict, d: int) -> float:
    """The factor on q k^T: the `scale` attribute, or 1/sqrt(D) when it is unset."""
    scale = attrs.get("scale")
    return 1.0 / math.sqrt(d) if scale is None else float(scale)


def _batch(shapes: list[tuple[int, ...]], types: list[TensorType]) -> tuple[int, ...]:
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(rank):
        dims = {s[i - rank + len(s)] for s in shapes if i - rank + len(s) >= 0} - {1}
        if len(dims) > 1:
            listed = ", ".join(f"'{n}' {t}" for n, t in zip("qkv", types))
            raise OpTypeError(f"batch dimensions {', '.join(_fmt(s) for s in shapes)} do not broadcast "
                              f"(of {listed})")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def _infer_attention(t: list[TensorType], a: dict) -> TensorType:
    require_f32(t, ("q", "k", "v"))
    q, k, v = t
    for name, x in zip("qkv", t):
        if x.rank < 2:
            raise OpTypeError(f"operand '{name}' {x} must have rank >= 2 ([..., length, features])")
    if k.shape[-1] != q.shape[-1]:
        raise OpTypeError(f"'k' {k} has {k.shape[-1]} features per key but 'q' {q} has {q.shape[-1]} "
                          f"(the last axes of q and k must agree)")
    if v.shape[-2] != k.shape[-2]:
        raise OpTypeError(f"'v' {v} has {v.shape[-2]} values but 'k' {k} has {k.shape[-2]} keys "
                          f"(axis -2 of k and v must agree)")
    batch = _batch([q.shape[:-2], k.shape[:-2], v.shape[:-2]], t)
    return result_of(batch + (q.shape[-2], v.shape[-1]), f"attention over {q}, {k} and {v}")


def _exp_roundings() -> int:
    exp = OPS.get("exp")
    return exp.roundings([TensorType((1,))], {}) if exp is not None else EXP_ROUNDINGS


def _roundings(t: list[TensorType], a: dict) -> int:
    """Roundings of the result relative to its magnitude (see `_magnitude`): D for a score and 3
    around it (the scale, the max subtracted), exp's own, the Lk-term sums of the softmax's
    denominator and of the weighted values, the division, and for a kernel with running sums one
    rescale (an exp and a product) per KEYS_PER_RESCALE keys."""
    d, lk = t[0].shape[-1], t[1].shape[-2]
    exp = _exp_roundings()
    return d + 3 + exp + 2 * lk + 1 + math.ceil(lk / KEYS_PER_RESCALE) * (exp + 1)


def _magnitude(attrs: dict, operands: list[np.ndarray]) -> np.ndarray:
    """What the error of each output element is relative to: max_j |v_j| (the output is an average
    of the values) times 1 + 2 max_j |s_ij|, with |s_ij| <= |scale| sum_d |q_id| |k_jd|: an error of
    delta in a score changes the weights by a factor up to exp(2 delta), and a score's rounding is
    relative to its magnitude. The operands here are magnitudes (upper bounds of |q|, |k|, |v|)."""
    q, k, v = operands
    scale = abs(attention_scale(attrs, q.shape[-1]))
    batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    qs, ks = problems(q, batch), problems(k, batch)
    largest_score = np.empty(qs.shape[:-1], np.float64)               # [problems, Lq]
    for p, i in score_chunks(*qs.shape[:2], ks.shape[1]):
        scores = np.matmul(qs[p, i].astype(np.float64), np.swapaxes(ks[p], -1, -2).astype(np.float64))
        largest_score[p, i] = scores.max(axis=-1)
    largest_score = scale * largest_score.reshape(batch + (q.shape[-2], 1))
    largest_value = np.asarray(v, np.float64).max(axis=-2, keepdims=True)   # [..., 1, Dv]
    return (1.0 + 2.0 * largest_score) * largest_value


CHUNK_SCORES = 1 << 22       # scores held at once by the numpy formulations (16 MiB of float32)


def problems(x: np.ndarray, batch: tuple[int, ...]) -> np.ndarray:
    """x [..., L, F] broadcast to the batch and flattened: [problems, L, F] (a copy only where it
    broadcasts)."""
    return np.broadcast_to(x, batch + x.shape[-2:]).reshape(-1, *x.shape[-2:])


def score_chunks(count: int, lq: int, lk: int):
    """(problems, query rows) slices that cover [count, Lq] with at most CHUNK_SCORES scores each,
    so that a numpy formulation never holds a whole large score matrix."""
    if lq * lk <= CHUNK_SCORES:
        group = max(1, CHUNK_SCORES // (lq * lk))
        for p in range(0, count, group):
            yield slice(p, p + group), slice(None)
        return
    rows = max(1, CHUNK_SCORES // lk)
    for p in range(count):
        for i in range(0, lq, rows):
            yield slice(p, p + 1), slice(i, i + rows)


ATTENTION = declare(OpDef(
    "attention",
    "softmax(q k^T * scale) v over the last two axes: q [..., Lq, D], k [..., Lk, D], "
    "v [..., Lk, Dv] -> [..., Lq, Dv]; the leading axes broadcast as in numpy.",
    operands=("q", "k", "v"),
    attrs={"scale": Attr("float", None, doc="the factor on q k^T; unset: 1/sqrt(D), as torch's "
                                             "scaled_dot_product_attention")},
    infer=_infer_attention, traits={COMPOSITE}, rounding=_roundings, magnitude=_magnitude,
))
