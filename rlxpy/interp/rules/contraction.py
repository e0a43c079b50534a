"""Contractions."""

from __future__ import annotations

import numpy as np

from ...ir.graph import Node
from . import rule


@rule("matmul")
def matmul(node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _matmul(a, b)


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if b.ndim == 2:  # one big GEMM instead of numpy's loop over a's leading axes
        return (a.reshape(-1, a.shape[-1]) @ b).reshape(a.shape[:-1] + b.shape[-1:])
    return np.matmul(a, b)
