"""Binding parameters: every `param` node becomes a `const` holding the caller's array.

Every param must be given, with the declared shape and a float dtype (converted to float32), and
finite; a key the graph does not have is an error too, so that a misspelt name is never ignored.
`load_params` reads them from a safetensors file keyed by param name, with the same checks.
"""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np
from safetensors import SafetensorError, safe_open

from .errors import WeightsError
from .files import read_bf16, regular_file
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


FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")      # safetensors dtypes converted to float32


def load_params(path: str | os.PathLike, graph: Graph) -> dict[str, np.ndarray]:
    """Every param of `graph` from a safetensors file keyed by param name, as float32 arrays.

    The file must hold exactly the graph's params: a missing or unknown key, a wrong shape, a
    non-float dtype or a NaN/Inf is a `WeightsError` naming the param and the file.
    """
    path = regular_file(path, "params", WeightsError)
    try:
        handle = safe_open(str(path), framework="numpy")
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"params file {path}: not a readable safetensors file ({e})") from None
    wanted = graph.param_types
    has = f"graph @{graph.name} has " + (", ".join(map(repr, wanted)) if wanted else "no params")
    params = {}
    with handle as f:
        keys = list(f.keys())
        unknown = [k for k in keys if k not in wanted]
        if unknown:
            more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
            raise WeightsError(f"params file {path}: unknown param '{unknown[0]}'{more}; {has}")
        missing = [k for k in wanted if k not in keys]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise WeightsError(f"params file {path}: missing param '{missing[0]}' (expected a float tensor of "
                               f"shape {list(wanted[missing[0]].shape)}){more}")
        for key, t in wanted.items():
            info = f.get_slice(key)
            dtype, shape = info.get_dtype(), tuple(info.get_shape())
            if dtype not in FLOAT_DTYPES:
                raise WeightsError(f"param '{key}' in {path}: dtype {dtype} is not a float type "
                                   f"(expected one of {', '.join(FLOAT_DTYPES)})")
            if shape != t.shape:       # checked before reading: a wrong file may be large
                raise WeightsError(f"param '{key}' in {path}: expected shape {list(t.shape)}, got {list(shape)}")
            array = read_bf16(path, key) if dtype == "BF16" else f.get_tensor(key)
            params[key] = as_float32(key, array, t, what="param", where=str(path))
    return params
