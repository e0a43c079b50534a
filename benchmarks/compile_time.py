"""Compile time of the SAM 2 neck on target "llvm": cold (empty object cache) and from the cache,
each in a fresh process and in this one.

    python benchmarks/compile_time.py [--config base_plus] [--image-size 1024] [--batch 1]
                                      [--repeat 7] [--json]

What is timed is the call `rlxpy.compile(build_fpn_neck_ir(cfg), params, target="llvm", cache=DIR)`
alone: the graph and the weights are made before the clock starts. In a fresh process that call
also pays for what a process's first compile does: importing the llvm backend (llvmlite's binding),
initialising LLVM, and building the position encodings that fold-constants makes (85 MB at
1024x1024; shared while any executable holds them). In this process, one compile warms it up first,
and nothing is kept alive between repeats, so every compile builds the encodings again.

    cold, fresh process   per repeat a new process and an empty cache directory
    hit, fresh process    a new process on the directory that cold run filled
    cold, in-process      per repeat an empty cache directory
    hit, in-process       that directory again

Each row prints the median of `--repeat` and the stages of the median run: passes (the pass
pipeline, the encodings included), plan (rule selection, weight packing, cache key), lower (IR
emission and printing, on a miss only), optimise, codegen, load (object code into the JIT), and
other (importing the backend, binding params, verifying). Wall clock on a machine others may
share: read the medians, and run it twice.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STAGES = ("passes", "plan", "lower", "optimise", "codegen", "load", "other")


def neck(args):
    from rlxpy.models.sam2 import FpnNeckConfig, build_fpn_neck_ir, synthetic_fpn_neck_weights
    cfg = FpnNeckConfig.for_hiera(args.config, image_size=args.image_size, batch=args.batch)
    return cfg, build_fpn_neck_ir(cfg), synthetic_fpn_neck_weights(cfg)


def timed_compile(graph, params, cache_dir: str) -> dict:
    """One rlxpy.compile, its wall time split into stages (seconds), and its cache status."""
    import rlxpy
    start = time.perf_counter()
    exe = rlxpy.compile(graph, params, target="llvm", cache=cache_dir)
    total = time.perf_counter() - start
    stages = {"passes": sum(a.seconds for a in exe.pass_log.applications)}
    stages.update({k: v for k, v in exe.compile_times.items() if k != "total"})
    stages["other"] = total - stages["passes"] - exe.compile_times["total"]
    kernels = sum(kind == "native" for kind in exe.placement.values())
    return {"total": total, "stages": stages, "status": exe.cache_status, "kernels": kernels,
            "ir_lines": exe.llvm_ir.count("\n")}


def child(args) -> None:
    _, graph, params = neck(args)
    print(json.dumps(timed_compile(graph, params, args.child)))


def fresh(args, cache_dir: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", cache_dir, "--config", args.config,
           "--image-size", str(args.image_size), "--batch", str(args.batch)]
    env = {k: v for k, v in os.environ.items() if k != "RLXPY_DEBUG"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"compile_time: the child process failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def median_row(runs: list[dict]) -> dict:
    runs = sorted(runs, key=lambda r: r["total"])
    mid = runs[len(runs) // 2]
    return {"median_ms": statistics.median(r["total"] for r in runs) * 1e3,
            "min_ms": runs[0]["total"] * 1e3, "max_ms": runs[-1]["total"] * 1e3,
            "stages_ms": {k: v * 1e3 for k, v in mid["stages"].items()},
            "status": sorted({r["status"] for r in runs}), "kernels": mid["kernels"], "ir_lines": mid["ir_lines"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="base_plus")
    ap.add_argument("--image-size", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    rows: dict[str, list[dict]] = {k: [] for k in ("cold, fresh process", "hit, fresh process",
                                                   "cold, in-process", "hit, in-process")}
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as d:
            rows["cold, fresh process"].append(fresh(args, d))
            rows["hit, fresh process"].append(fresh(args, d))
    cfg, graph, params = neck(args)
    with tempfile.TemporaryDirectory() as d:
        timed_compile(graph, params, d)                    # warm up: imports, LLVM, first encodings
    gc.collect()
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as d:
            rows["cold, in-process"].append(timed_compile(graph, params, d))
            gc.collect()
            rows["hit, in-process"].append(timed_compile(graph, params, d))
            gc.collect()

    from rlxpy.codegen.target import host
    results = {"neck": cfg.describe(), "machine": host().describe(), "repeat": args.repeat,
               "rows": {label: median_row(runs) for label, runs in rows.items()}}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    first = results["rows"]["cold, in-process"]
    print(f"rlxpy.compile of the {cfg.describe()} neck, target llvm: {first['kernels']} kernels, "
          f"{first['ir_lines']} lines of LLVM IR")
    print(f"({results['machine']}; median of {args.repeat}, wall clock)")
    for label, row in results["rows"].items():
        stages = ", ".join(f"{k} {row['stages_ms'][k]:.1f}" for k in STAGES if k in row["stages_ms"])
        print(f"  {label:20s} {row['median_ms']:7.1f} ms  [{row['min_ms']:.1f} .. {row['max_ms']:.1f}]  "
              f"({stages} ms; {', '.join(row['status'])})")


if __name__ == "__main__":
    main()
