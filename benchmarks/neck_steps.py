"""Where the neck's time goes: each native step of the compiled neck, timed inside whole calls.

    python benchmarks/neck_steps.py [--config base_plus] [--image-size 1024] [--batch 1]
                                    [--threads N] [--repeat 40]

The neck is compiled for target "llvm" and called `--repeat` times with preallocated outputs (as
`rlxpy bench`'s "rlxpy llvm (out=)" row); the plan's `observe` hook stamps the clock after every
step, so a step's time is measured where it runs in the neck, with the caches the steps before it
left (a level timed alone, on inputs a cache already holds, runs faster). Prints, per step, the
median ms, GFLOP/s per core against the FMA peak measured by the same calibration as `rlxpy bench`,
and the share of the whole call. The first step's time includes the call's own overhead (input
checks, buffer set-up).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rlxpy  # noqa: E402
from rlxpy.benchmark.peak import calibrate  # noqa: E402
from rlxpy.benchmark.runner import limited_threads, neck_case  # noqa: E402
from rlxpy.codegen.runtime import aligned_empty  # noqa: E402
from rlxpy.models.sam2 import FpnNeckConfig, build_fpn_neck_ir  # noqa: E402


def step_flops(graph, node) -> float:
    """2 * pixels * K * N for a fused_matmul (its result has N x pixels elements), else 0."""
    if node.op != "fused_matmul":
        return 0.0
    return 2.0 * node.type.numel * graph.type_of(node.operands[0]).shape[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="base_plus")
    ap.add_argument("--image-size", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=40)
    args = ap.parse_args()

    cfg = FpnNeckConfig.for_hiera(args.config, image_size=args.image_size, batch=args.batch)
    params, inputs = neck_case(cfg)
    peak = calibrate(seconds=0.2)
    exe = rlxpy.compile(build_fpn_neck_ir(cfg), params, target="llvm", threads=args.threads)
    out = {f"features_{i}": aligned_empty(cfg.output_shape(i)) for i in range(cfg.num_levels)}
    graph = exe.program.graph
    times: dict[str, list[float]] = {}
    totals = []
    with limited_threads(args.threads):
        for _ in range(args.repeat + 5):
            stamp = [time.perf_counter()]
            seen: dict[str, float] = {}

            def observe(name, _array):
                now = time.perf_counter()
                seen[name] = now - stamp[0]
                stamp[0] = now
            start = stamp[0]
            exe.program.run(inputs, out, observe=observe)
            totals.append(time.perf_counter() - start)
            for name, dt in seen.items():
                times.setdefault(name, []).append(dt)
    skip = 5                                               # warm-up calls
    total = statistics.median(totals[skip:])
    print(f"{cfg.variant} {cfg.image_size[0]}x{cfg.image_size[1]} batch {cfg.batch}, {args.threads} thread(s); "
          f"FMA peak {peak.per_core:.1f} GFLOP/s per core ({peak.lanes} lanes)")
    print(f"{'step':14s} {'rule':18s} {'median ms':>9s} {'GFLOP/s/core':>12s} {'x peak':>7s} {'share':>6s}")
    steps = {s.node.name: s for s in exe.steps}
    for name, ts in times.items():
        ms = statistics.median(ts[skip:]) * 1e3
        step = steps[name]
        flops = step_flops(graph, step.node)
        rate = flops / (ms * 1e-3) / 1e9 / args.threads if flops else 0.0
        print(f"%{name:13s} {step.rule or step.kind:18s} {ms:9.3f} {rate:12.1f} "
              f"{(rate / peak.per_core if rate else 0):7.2f} {ms / (total * 1e3):6.1%}")
    print(f"{'whole call':33s} {total * 1e3:9.3f} {cfg.flops() / total / 1e9 / args.threads:12.1f} "
          f"{cfg.flops() / total / 1e9 / args.threads / peak.per_core:7.2f}")



if __name__ == "__main__":
    main()
