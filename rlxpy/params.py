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


def as_float32(key: str, array, expected: TensorType, what: str = "param", where: str = "") -> np.ndarray:
    """`array` as a read-only contiguous float32 copy, or a `WeightsError` naming `key`."""
    src = f" in {where}" if where else ""
    a = np.asarray(array)
    if a.dtype.kind != "f":
        raise WeightsError(f"{what} '{key}'{src}: dtype {a.dtype} is not a float type (expected float32)")
    if tuple(a.shape) != expected.shape:
        raise WeightsError(f"{what} '{key}'{src}: expected shape {list(expected.shape)}, got {list(a.shape)}")
    out = np.array(a, dtype=np.float32, order="C", copy=True)
    if not np.isfinite(out).all():
        bad = int(np.size(out) - np.count_nonzero(np.isfinite(out)))
        raise WeightsError(f"{what} '{key}'{src}: {bad} value(s) are NaN or Inf")
    out.setflags(write=False)
    return out


def bind_params(graph: Graph, params: Mapping[str, object] | None) -> Graph:
    """Replace each `param` node by a `const` with its value; return the verified graph."""
    params = dict(params or {})
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
