"""Per-node comparison of native results with the interpreter (`compare_with="interp"`).

Each native node's result is checked against its interpreter rule evaluated on the very operand
values the kernel read, so an error is pinned to the node that made it and never inherited.
Aliases (views, no code) and interpreter steps are exact by construction and are not checked.

Tolerance: 1e-5 of the output's scale, max |reference|. Long reductions accumulate rounding in
proportion to their length, so for a matmul of contraction length K the tolerance grows by
sqrt(K / 1024) once K exceeds 1024 (random-sign rounding errors add like a random walk); at the SAM
2 neck's largest K (1152) that is 1.06x.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import MiscompileError
from ..ir.graph import Graph, Node
from ..ir.verify import where

RTOL = 1e-5


def tolerance_factor(graph: Graph, node: Node) -> float:
    if node.op in ("matmul", "fused_matmul"):
        k = graph.type_of(node.operands[0]).shape[-1]
        return max(1.0, math.sqrt(k / 1024))
    return 1.0


def check_node(graph: Graph, node: Node, symbol: str, got: np.ndarray, ref: np.ndarray) -> None:
    """Raise `MiscompileError` if `got` (native) differs from `ref` (interpreter) beyond tolerance."""
    ref = np.asarray(ref, dtype=np.float32)
    nan_got, nan_ref = np.isnan(got), np.isnan(ref)
    finite = ~(nan_got | nan_ref)
    scale = float(np.abs(ref[finite]).max()) if finite.any() else 0.0
    tol = RTOL * tolerance_factor(graph, node) * max(scale, float(np.finfo(np.float32).tiny))
    diff = np.where(finite, np.abs(got.astype(np.float64) - ref.astype(np.float64)), 0.0)
    diff = np.where(nan_got != nan_ref, np.inf, diff)
    worst = int(np.argmax(diff)) if diff.size else 0
    err = float(diff.reshape(-1)[worst]) if diff.size else 0.0
    if err > tol or math.isnan(err):
        at = list(np.unravel_index(worst, got.shape)) if got.ndim else []
        raise MiscompileError(
            f"{where(node)}: native kernel {symbol} differs from the interpreter by {err:.3g} at "
            f"{at} (native {float(got.reshape(-1)[worst]):.7g}, interpreter {float(ref.reshape(-1)[worst]):.7g}); "
            f"that is {err / max(scale, 1e-300):.3g} of the output's scale {scale:.3g}, "
            f"tolerance {tol / max(scale, 1e-300):.3g}"
        )
