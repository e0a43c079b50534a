"""An independent float64 reference of SAM 2's FpnNeck + PositionEmbeddingSine.

Written from the official model's definition, separately from rlxpy's graph and interpreter, and
by other means: einsum for the 1x1 conv, fancy indexing for nearest upsampling, interpolation
matrices built from PyTorch's source-index formula for bilinear, and the official stack/flatten
channel layout for the position encoding. Inputs are BHWC; outputs NCHW, fine -> coarse.
"""

from __future__ import annotations

import math

import numpy as np

CHANNELS = {  # backbone_channel_list, coarse -> fine
    "tiny": [768, 384, 192, 96],
    "small": [768, 384, 192, 96],
    "base_plus": [896, 448, 224, 112],
    "large": [1152, 576, 288, 144],
}


def conv1x1(x_bhwc: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    w = weight.astype(np.float64)[:, :, 0, 0]
    return np.einsum("bhwc,oc->bohw", x_bhwc.astype(np.float64), w) + bias.astype(np.float64)[None, :, None, None]


def nearest2x(t: np.ndarray) -> np.ndarray:
    h, w = t.shape[-2:]
    rows = np.arange(2 * h) // 2
    cols = np.arange(2 * w) // 2
    return t[..., rows[:, None], cols[None, :]]


def linear_matrix(n: int) -> np.ndarray:
    """PyTorch's align_corners=False source index for scale 2: max((i + 0.5) / 2 - 0.5, 0)."""
    m = np.zeros((2 * n, n))
    for i in range(2 * n):
        src = max((i + 0.5) * 0.5 - 0.5, 0.0)
        i0 = int(math.floor(src))
        i1 = min(i0 + 1, n - 1)
        frac = src - i0
        m[i, i0] += 1 - frac
        m[i, i1] += frac
    return m


def bilinear2x(t: np.ndarray) -> np.ndarray:
    ah, aw = linear_matrix(t.shape[-2]), linear_matrix(t.shape[-1])
    return np.einsum("ih,bchw,jw->bcij", ah, t, aw)


def position_encoding(batch: int, d_model: int, h: int, w: int, temperature: float = 10000.0) -> np.ndarray:
    feats = d_model // 2
    y = np.arange(1, h + 1, dtype=np.float64)[None, :, None].repeat(w, axis=2)
    x = np.arange(1, w + 1, dtype=np.float64)[None, None, :].repeat(h, axis=1)
    y = y / (y[:, -1:, :] + 1e-6) * 2 * math.pi
    x = x / (x[:, :, -1:] + 1e-6) * 2 * math.pi
    dim_t = np.arange(feats, dtype=np.float64)
    dim_t = temperature ** (2 * (dim_t // 2) / feats)
    px = x[..., None] / dim_t
    py = y[..., None] / dim_t
    px = np.stack((np.sin(px[..., 0::2]), np.cos(px[..., 1::2])), axis=4).reshape(1, h, w, feats)
    py = np.stack((np.sin(py[..., 0::2]), np.cos(py[..., 1::2])), axis=4).reshape(1, h, w, feats)
    pos = np.concatenate((py, px), axis=3).transpose(0, 3, 1, 2)
    return np.repeat(pos, batch, axis=0)


def fpn_neck(xs: list[np.ndarray], params: dict[str, np.ndarray], *, fuse_type: str = "sum",
             interp: str = "nearest", top_down_levels=(2, 3), d_model: int = 256) -> dict[str, np.ndarray]:
    n = len(xs)
    out = {}
    prev = None
    for i in range(n - 1, -1, -1):
        j = n - 1 - i
        lateral = conv1x1(xs[i], params[f"image_encoder.neck.convs.{j}.conv.weight"],
                          params[f"image_encoder.neck.convs.{j}.conv.bias"])
        if i in top_down_levels and prev is not None:
            up = nearest2x(prev) if interp == "nearest" else bilinear2x(prev)
            prev = lateral + up
            if fuse_type == "avg":
                prev = prev / 2
        else:
            prev = lateral
        out[f"features_{i}"] = prev
        b, _, h, w = prev.shape
        out[f"pos_{i}"] = position_encoding(b, d_model, h, w)
    return out


def hashed_uniform(shape, salt: int, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    """Reproducible pseudo-random float32 data from integer hashing (splitmix64), the same on every
    platform and numpy version: used for the golden files made with the official model."""
    n = int(np.prod(shape))
    with np.errstate(over="ignore"):
        z = np.arange(n, dtype=np.uint64) + np.uint64(salt) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return (low + (high - low) * u).reshape(shape).astype(np.float32)


def golden_case_data(variant: str, image_size: tuple[int, int], batch: int):
    """Inputs (BHWC, fine -> coarse) and checkpoint-keyed params of a golden case."""
    channels = CHANNELS[variant]
    h, w = image_size
    xs = [hashed_uniform((batch, h // s, w // s, channels[3 - i]), salt=100 + i, low=-2, high=2)
          for i, s in enumerate((4, 8, 16, 32))]
    params = {}
    for j, cin in enumerate(channels):
        bound = 1 / math.sqrt(cin)
        params[f"image_encoder.neck.convs.{j}.conv.weight"] = hashed_uniform((256, cin, 1, 1), 200 + j, -bound, bound)
        params[f"image_encoder.neck.convs.{j}.conv.bias"] = hashed_uniform((256,), 300 + j, -bound, bound)
    return xs, params
