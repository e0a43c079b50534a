"""Binding parameters: every `param` node becomes a `const` holding the caller's array.

Every param must be given, with the declared shape and a float dtype (converted to float32), and
finite; a key the graph does not have is an error too, so that a misspelt name is never ignored.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .errors import WeightsError
from .ir.graph import Graph
from .ir.types import TensorType
from .ir.verify import verify
from .memory import allocating


def as_float32(key: str, array, expected: TensorType, what: str = "param", where: str = "") -> np.ndarray:
    """`array` as a read-only contiguous float32 copy, or a `WeightsError` naming `key`."""
    src = f" in {where}" if where else ""
    try:
        a = np.asarray(array)
    except (ValueError, TypeError) as e:         # e.g. a ragged nested list
        raise WeightsError(f"{what} '{key}'{src}: cannot be read as an array ({e})") from None
    if a.dtype.kind != "f":
        raise WeightsError(f"{what} '{key}'{src}: dtype {a.dtype} is not a float type (expected float32)")
    if tuple(a.shape) != expected.shape:
        raise WeightsError(f"{what} '{key}'{src}: expected shape {list(expected.shape)}, got {list(a.shape)}")
    with np.errstate(over="ignore"), allocating(f"a float32 copy of {what} '{key}'{src} {list(a.shape)}", 4 * a.size):
        out = np.array(a, dtype=np.float32, order="C", copy=True)
    finite = np.isfinite(out)
    if not finite.all():
        _not_finite(a, finite, f"{what} '{key}'{src}")
    out.setflags(write=False)
    return out


def _not_finite(a: np.ndarray, finite: np.ndarray, culprit: str) -> None:
    """Raise for non-finite float32 values: NaN or Inf in the source, or finite values too large
    for float32 (a float64 checkpoint that overflows on conversion)."""
    overflow = ~finite & np.isfinite(a)
    bad = int(np.size(a) - np.count_nonzero(finite) - np.count_nonzero(overflow))
    nan_inf = f"{bad} value(s) are NaN or Inf"
    if overflow.any():
        largest = float(np.abs(a[overflow]).max())
        raise WeightsError(
            f"{culprit}: {int(overflow.sum())} value(s) overflow float32 (largest magnitude {largest:.6g}; "
            f"float32 holds up to {float(np.finfo(np.float32).max):.6g})" + (f"; also {nan_inf}" if bad else "")
        )
    raise WeightsError(f"{culprit}: {nan_inf}")


def bind_params(graph: Graph, params: Mapping[str, object] | None) -> Graph:
    """Replace each `param` node by a `const` with its value; return the verified graph."""
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise WeightsError(f"params must be a mapping of param name -> array, got {type(params).__name__}")
    params = dict(params)
    wanted = graph.param_types
    unknown = sorted(set(params) - set(wanted))
    if unknown:
        raise WeightsError(
            f"unknown param(s) {', '.join(map(repr, unknown))}: graph @{graph.name} has "
            f"{', '.join(map(repr, wanted)) or 'no params'}"
        )
    missing = [k for k in wanted if k not in params]
    if missing:
        raise WeightsError(
            f"missing param '{missing[0]}' (expected shape {list(wanted[missing[0]].shape)})"
            + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
        )
    nodes = []
    for node in graph.nodes:
        if node.op == "param":
            value = as_float32(node.attrs["name"], params[node.attrs["name"]], node.type)
            node = node.with_(op="const", attrs={}, value=value, origin="bind-params")
        nodes.append(node)
    return verify(graph.with_nodes(nodes))
