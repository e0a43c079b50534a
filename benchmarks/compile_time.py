"""Compile time of the SAM 2 neck on target "llvm": cold (nothing cached) and from the object cache.

    python benchmarks/compile_time.py [--config base_plus] [--image-size 1024] [--repeat 7]

Two graphs: the neck as rlxpy.compile optimises it (with whatever pipeline the driver runs), and
the fused form the default pipeline aims at, built here by hand (one fused_matmul per level, the
position encodings as constants). Each is compiled `--repeat` times into a fresh cache directory
(cold) and `--repeat` times again from it (hit); the medians are printed with the stages of the
median run. It also prints the median run time of each executable, for scale. Timings are wall
clock on a machine others may share: read the medians, not single runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rlxpy  # noqa: E402
from rlxpy import GraphBuilder  # noqa: E402
from rlxpy.codegen.target import host  # noqa: E402
from rlxpy.interp import sine_position_encoding  # noqa: E402
from rlxpy.models.sam2 import (FpnNeckConfig, build_fpn_neck_ir, synthetic_fpn_neck_inputs,  # noqa: E402
                               synthetic_fpn_neck_weights)


def fused_neck(cfg: FpnNeckConfig, params: dict) -> rlxpy.Graph:
    b = GraphBuilder("fpn_neck_fused")
    xs = [b.input(f"x{i}", cfg.input_shape(i)) for i in range(cfg.num_levels)]
    features, pos, prev = {}, {}, None
    for i in reversed(range(cfg.num_levels)):
        j = cfg.conv_index(i)
        w = b.const(np.ascontiguousarray(params[cfg.weight_key(j)][:, :, 0, 0].T))
        bias = b.const(params[cfg.bias_key(j)])
        if i in cfg.top_down_levels and prev is not None:
            prev = b.fused_matmul(xs[i], w, bias, prev, bias=True, perm=(0, 3, 1, 2), upsample=cfg.interp,
                                  factor=0.5 if cfg.fuse_type == "avg" else 1.0)
        else:
            prev = b.fused_matmul(xs[i], w, bias, bias=True, perm=(0, 3, 1, 2))
        features[i] = prev
        h, w_ = cfg.level_hw(i)
        pos[i] = b.const(sine_position_encoding(cfg.batch, cfg.d_model, h, w_, cfg.temperature))
    for i in range(cfg.num_levels):
        b.output(f"features_{i}", features[i])
        b.output(f"pos_{i}", pos[i])
    return b.build()


def timed(fn):
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def median_run(runs):
    """(median seconds, the executable of the median run)."""
    runs = sorted(runs, key=lambda r: r[0])
    return statistics.median(r[0] for r in runs), runs[len(runs) // 2][1]


def stages(exe) -> str:
    return ", ".join(f"{k} {v * 1e3:.1f}" for k, v in exe.compile_times.items() if k != "total") + " ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="base_plus")
    ap.add_argument("--image-size", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    cfg = FpnNeckConfig.for_hiera(args.config, image_size=args.image_size)
    params = synthetic_fpn_neck_weights(cfg)
    inputs = synthetic_fpn_neck_inputs(cfg)
    graphs = {
        "rlxpy.compile(neck)": (build_fpn_neck_ir(cfg), params),
        "hand-fused neck": (fused_neck(cfg, params), None),
    }
    print(f"compile time of the {cfg.describe()} neck, target llvm "
          f"({host().describe()}; median of {args.repeat})")
    rlxpy.compile(*graphs["hand-fused neck"], target="llvm", cache=False)   # warm up imports and LLVM
    for label, (graph, graph_params) in graphs.items():
        cold, hit = [], []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as d:
                cold.append(timed(lambda: rlxpy.compile(graph, graph_params, target="llvm", cache=d)))
                hit.append(timed(lambda: rlxpy.compile(graph, graph_params, target="llvm", cache=d)))
        (t_cold, exe_cold), (t_hit, exe_hit) = median_run(cold), median_run(hit)
        assert exe_cold.cache_status == "miss" and exe_hit.cache_status == "hit"
        kinds = exe_cold.placement.values()
        runs = [timed(lambda: exe_hit(**inputs))[0] for _ in range(3)]
        print(f"  {label}: {sum(k == 'native' for k in kinds)} kernels, "
              f"{sum(k == 'interp' for k in kinds)} interpreter steps")
        print(f"    cold compile  {t_cold * 1e3:8.1f} ms   ({stages(exe_cold)})")
        print(f"    cache hit     {t_hit * 1e3:8.1f} ms   ({stages(exe_hit)})")
        print(f"    run           {statistics.median(runs) * 1e3:8.1f} ms   "
              f"({cfg.flops() / statistics.median(runs) / 1e9:.1f} GFLOP/s, {exe_hit.threads} threads)")


if __name__ == "__main__":
    main()
