"""Attention, unfused: the definition the fused kernels are checked against.

In float32 throughout, as written: s = (q @ k^T) * scale, s - max(s) along the keys, exp,
divided by its sum, then @ v. Both products are numpy matmuls in float32 (BLAS sgemm: float32
accumulators, summed in the library's blocked order); the softmax's denominator is numpy's sum
over the keys (float32, pairwise). Rows of queries are independent, so the work is done in chunks
of at most `CHUNK_SCORES` scores: the whole score matrix of a long sequence is never held at once.
"""

from __future__ import annotations

import numpy as np

from ...ir.graph import Node
from ...ir.ops.attention import attention_scale, problems, score_chunks
from . import rule


@rule("attention")
def attention(node: Node, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    scale = np.float32(attention_scale(node.attrs, q.shape[-1]))
    batch, (lq, dv) = node.type.shape[:-2], node.type.shape[-2:]
    qs, ks, vs = problems(q, batch), problems(k, batch), problems(v, batch)
    out = np.empty((qs.shape[0], lq, dv), np.float32)
    for p, i in score_chunks(qs.shape[0], lq, ks.shape[1]):
        s = np.matmul(qs[p, i], np.swapaxes(ks[p], -1, -2))
        s *= scale
        s -= s.max(axis=-1, keepdims=True)
        np.exp(s, out=s)
        s /= s.sum(axis=-1, keepdims=True)
        out[p, i] = np.matmul(s, vs[p])
    return out.reshape(node.type.shape)
