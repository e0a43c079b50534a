"""The SAM 2 FPN neck (`FpnNeck` + `PositionEmbeddingSine`) as an rlxpy graph.

Inputs `x0..x3` are the Hiera stage outputs, channels-last (BHWC), fine -> coarse. For each level,
coarse to fine, the 1x1 lateral conv is a matmul with the transposed conv weight plus a bias, then
a layout change to NCHW. A level in `top_down_levels` adds the 2x-upsampled result of the level
above it (halved when fuse_type is "avg"); any other level restarts the chain with its lateral.
Outputs are `features_i` and `pos_i` for every level, NCHW float32.
"""

from __future__ import annotations

from ...ir import Graph, GraphBuilder
from .config import FpnNeckConfig

NHWC_TO_NCHW = (0, 3, 1, 2)


def build_fpn_neck_ir(cfg: FpnNeckConfig) -> Graph:
    """The neck's graph, its params unbound and named by their checkpoint keys."""
    b = GraphBuilder("fpn_neck")
    xs = [b.input(f"x{i}", cfg.input_shape(i)) for i in range(cfg.num_levels)]
    d = cfg.d_model
    features, pos = {}, {}
    prev = None
    for i in reversed(range(cfg.num_levels)):                  # coarse -> fine
        j, cin = cfg.conv_index(i), cfg.channels(i)
        height, width = cfg.level_hw(i)
        weight = b.param(cfg.weight_key(j), (d, cin, 1, 1), value_name=f"w{i}")
        bias = b.param(cfg.bias_key(j), (d,), value_name=f"b{i}")
        w_t = b.transpose(b.reshape(weight, shape=(d, cin)), perm=(1, 0), name=f"wt{i}")  # [cin, d]
        lateral = b.bias_add(b.matmul(xs[i], w_t), bias, axis=-1)                   # BHWC
        lateral = b.transpose(lateral, perm=NHWC_TO_NCHW, name=f"lateral{i}")       # NCHW
        if i in cfg.top_down_levels and prev is not None:
            avg = cfg.fuse_type == "avg"
            prev = b.upsample_add(lateral, prev, mode=cfg.interp, name=None if avg else f"features{i}")
            if avg:
                prev = b.scale(prev, factor=0.5, name=f"features{i}")
        else:
            prev = lateral
        features[i] = prev
        pos[i] = b.pos_encoding(batch=cfg.batch, dim=d, height=height, width=width,
                                temperature=cfg.temperature, name=f"pos{i}")
    for i in range(cfg.num_levels):                             # outputs fine -> coarse
        b.output(f"features_{i}", features[i])
        b.output(f"pos_{i}", pos[i])
    return b.build()
