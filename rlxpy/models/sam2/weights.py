"""The neck's weights: loading them from a safetensors checkpoint, and seeded synthetic ones.

A checkpoint may hold the whole SAM 2 model; only the neck's eight tensors are read. float16,
bfloat16 and float64 tensors are converted to float32. A missing key, a wrong shape, a non-float
dtype or a NaN/Inf value is an error naming the key, the file and what was expected.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from ...errors import OptionError, WeightsError
from ...files import read_bf16, regular_file
from ...ir.types import TensorType
from ...memory import allocating
from ...params import FLOAT_DTYPES, as_float32
from .config import FpnNeckConfig


def load_fpn_neck_weights(path: str | os.PathLike, cfg: FpnNeckConfig) -> dict[str, np.ndarray]:
    """The neck's params for `cfg` from a safetensors file, as float32 arrays by checkpoint key."""
    path = regular_file(path, "weights", WeightsError)
    try:
        handle = safe_open(str(path), framework="numpy")
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"weights file {path}: not a readable safetensors file ({e})") from None
    params = {}
    with handle as f:
        keys = set(f.keys())
        for key, shape in cfg.param_shapes().items():
            if key not in keys:
                raise WeightsError(_missing(key, shape, path, keys))
            info = f.get_slice(key)
            dtype, actual = info.get_dtype(), tuple(info.get_shape())
            if dtype not in FLOAT_DTYPES:
                raise WeightsError(
                    f"key '{key}' in {path}: dtype {dtype} is not a float type "
                    f"(expected one of {', '.join(FLOAT_DTYPES)})"
                )
            if actual != shape:
                raise WeightsError(
                    f"key '{key}' in {path}: expected shape {list(shape)}, got {list(actual)}"
                )
            array = read_bf16(path, key) if dtype == "BF16" else f.get_tensor(key)
            params[key] = as_float32(key, array, TensorType(shape), what="key", where=str(path))
    return params


def _missing(key: str, shape: tuple[int, ...], path: Path, keys: set[str]) -> str:
    msg = f"key '{key}' is missing from {path} (expected a float tensor of shape {list(shape)})"
    tail = key.split(".", 1)[1]                      # e.g. a neck-only export without the prefix
    near = sorted(k for k in keys if k.endswith(tail))
    return msg + (f"; found similar key '{near[0]}'" if near else f"; the file has {len(keys)} keys")


def synthetic_fpn_neck_weights(cfg: FpnNeckConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random weights with PyTorch's default Conv2d scale, U(-1/sqrt(cin), 1/sqrt(cin))."""
    rng = _generator(seed)
    params = {}
    for j, cin in enumerate(cfg.backbone_channel_list):
        bound = 1.0 / np.sqrt(cin)
        shape = (cfg.d_model, cin, 1, 1)
        with allocating(f"synthetic weight '{cfg.weight_key(j)}' {list(shape)} (float64, then float32)", 12 * cfg.d_model * cin):
            params[cfg.weight_key(j)] = rng.uniform(-bound, bound, shape).astype(np.float32)
        params[cfg.bias_key(j)] = rng.uniform(-bound, bound, (cfg.d_model,)).astype(np.float32)
    return params


def synthetic_fpn_neck_inputs(cfg: FpnNeckConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded standard-normal stage outputs x0..x3 (BHWC float32)."""
    rng = _generator(seed, 1)
    inputs = {}
    for i in range(cfg.num_levels):
        t = TensorType(cfg.input_shape(i))
        with allocating(f"synthetic input 'x{i}' {list(t.shape)} float32", t.nbytes):
            inputs[f"x{i}"] = rng.standard_normal(t.shape, dtype=np.float32)
    return inputs


def _generator(seed: int, offset: int = 0) -> np.random.Generator:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise OptionError(f"seed {seed!r}: expected an integer >= 0")
    return np.random.default_rng(int(seed) + offset)


def save_fpn_neck_weights(path: str | os.PathLike, params: dict[str, np.ndarray]) -> None:
    """Write params as a safetensors file under their checkpoint keys."""
    save_file({k: np.ascontiguousarray(v) for k, v in params.items()}, str(path))
