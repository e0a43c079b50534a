"""The ways of running the SAM 2 neck that `rlxpy bench` compares, each as a callable with no
arguments that returns {"features_i": NCHW array} (position encodings are shape-only constants in
every formulation and are not recomputed by any of them).

- rlxpy llvm (out=): the compiled neck writing into preallocated, cache-line aligned arrays.
- rlxpy llvm (fresh): the same returning fresh arrays (page faults of new memory included).
- rlxpy interp: the numpy interpreter on the optimised graph.
- numpy naive: channels-last matmul, bias, transpose copy to NCHW, np.repeat upsample, add.
- numpy best: W @ X^T straight into preallocated NCHW planes, bias and the upsampled coarser
  level added in place (the nearest upsample as a broadcast view, no temporary).
- torch NCHW / torch channels-last: conv2d + F.interpolate as SAM 2's FpnNeck does, on NCHW
  input or on the BHWC data viewed as a channels_last tensor (no copy); only if torch imports.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..interp.rules.pointwise import upsample2x_bilinear
from ..models.sam2 import FpnNeckConfig

Runner = Callable[[], dict[str, np.ndarray]]


def _levels(cfg: FpnNeckConfig, params: dict[str, np.ndarray]):
    """Per level (coarse -> fine): index, [256, K] weight, bias, and whether it adds the level above."""
    out, above = [], False
    for i in reversed(range(cfg.num_levels)):
        j = cfg.conv_index(i)
        w = np.ascontiguousarray(params[cfg.weight_key(j)][:, :, 0, 0], dtype=np.float32)
        b = np.ascontiguousarray(params[cfg.bias_key(j)], dtype=np.float32)
        out.append((i, w, b, i in cfg.top_down_levels and above))
        above = True
    return out


def numpy_naive(cfg: FpnNeckConfig, params, inputs) -> Runner:
    levels = _levels(cfg, params)
    half = np.float32(0.5)

    def run():
        result, prev = {}, None
        for i, w, bias, top_down in levels:
            x = inputs[f"x{i}"]
            y = (x.reshape(-1, x.shape[-1]) @ w.T) + bias
            y = np.ascontiguousarray(y.reshape(x.shape[:-1] + (w.shape[0],)).transpose(0, 3, 1, 2))
            if top_down:
                if cfg.interp == "nearest":
                    up = np.repeat(np.repeat(prev, 2, axis=2), 2, axis=3)
                else:
                    up = upsample2x_bilinear(prev)
                y = y + up
                if cfg.fuse_type == "avg":
                    y = y * half
            prev = result[f"features_{i}"] = y
        return result
    return run


def numpy_best(cfg: FpnNeckConfig, params, inputs, allocate: Callable) -> Runner:
    levels = _levels(cfg, params)
    outs = {f"features_{i}": allocate(cfg.output_shape(i)) for i in range(cfg.num_levels)}
    half = np.float32(0.5)

    def run():
        prev = None
        for i, w, bias, top_down in levels:
            x = inputs[f"x{i}"]
            y = outs[f"features_{i}"]
            bsz, d, h, wd = y.shape
            for n in range(bsz):                      # [256, K] @ [K, HW] into the NCHW plane
                np.matmul(w, x[n].reshape(h * wd, -1).T, out=y[n].reshape(d, h * wd))
            y += bias[None, :, None, None]
            if top_down:
                if cfg.interp == "nearest":
                    y.reshape(bsz, d, h // 2, 2, wd // 2, 2)[...] += prev[:, :, :, None, :, None]
                else:
                    y += upsample2x_bilinear(prev)
                if cfg.fuse_type == "avg":
                    y *= half
            prev = y
        return outs
    return run


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except Exception:
        return False
    return True


def torch_neck(cfg: FpnNeckConfig, params, inputs, channels_last: bool) -> Runner:
    import torch
    import torch.nn.functional as F

    levels = []
    for i, w, b, top_down in _levels(cfg, params):
        weight = torch.from_numpy(w[:, :, None, None].copy())
        x = torch.from_numpy(inputs[f"x{i}"]).permute(0, 3, 1, 2)       # NCHW view of BHWC data
        if channels_last:
            weight = weight.contiguous(memory_format=torch.channels_last)
        else:
            x = x.contiguous()                                           # NCHW as SAM 2's trunk gives
        levels.append((i, x, weight, torch.from_numpy(b.copy()), top_down))
    mode = cfg.interp
    kwargs = {} if mode == "nearest" else {"align_corners": False}

    def run():
        result, prev = {}, None
        with torch.inference_mode():
            for i, x, weight, bias, top_down in levels:
                y = F.conv2d(x, weight, bias)
                if top_down:
                    y = y + F.interpolate(prev, scale_factor=2.0, mode=mode, **kwargs)
                    if cfg.fuse_type == "avg":
                        y = y / 2
                prev = y
                result[f"features_{i}"] = y
        return {k: v.numpy() for k, v in result.items()}
    return run
