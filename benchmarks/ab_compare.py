"""A/B: the SAM 2 neck on two checkouts of rlxpy, timed interleaved in one run.

    python benchmarks/ab_compare.py OLD_DIR [NEW_DIR] [--config base_plus] [--image-size 1024]
                                    [--threads 2] [--rounds 15] [--calls 5]

Each checkout runs in a process of its own (PYTHONPATH=DIR, so `import rlxpy` is that code), with
the same seeded weights and inputs. A worker compiles the neck (cold: no object cache, several
times; hit: a private cache, compiled twice), then the driver asks the workers in turn for `calls`
timed calls, `rounds` times, so both see the same machine state; each row is the median over all
its calls, written into preallocated outputs (`out=`) and with fresh outputs. NEW_DIR defaults to
the checkout this script is in. Make an old checkout with e.g.
`git worktree add /tmp/rlxpy-old <commit>` (or `git archive <commit> | tar -x -C /tmp/rlxpy-old`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

WORKER = textwrap.dedent(r"""
    import json, statistics, sys, tempfile, time
    import numpy as np
    import rlxpy
    from rlxpy.models.sam2 import FpnNeckConfig, build_fpn_neck_ir, synthetic_fpn_neck_inputs, synthetic_fpn_neck_weights

    args = json.loads(sys.argv[1])
    cfg = FpnNeckConfig.for_hiera(args["config"], image_size=tuple(args["image_size"]), batch=1)
    params, inputs = synthetic_fpn_neck_weights(cfg, 0), synthetic_fpn_neck_inputs(cfg, 0)
    graph = build_fpn_neck_ir(cfg)

    def compile_once(**kw):
        t = time.perf_counter()
        exe = rlxpy.compile(graph, params, target="llvm", threads=args["threads"], **kw)
        return exe, time.perf_counter() - t

    cold = [compile_once(cache=False)[1] for _ in range(3)]
    with tempfile.TemporaryDirectory() as d:
        compile_once(cache=d)
        exe, hit = compile_once(cache=d)
    ref = rlxpy.compile(graph, params)(**inputs)
    out = {k: np.empty_like(v) for k, v in ref.items() if not k.startswith("pos")}
    got = exe.run(inputs, out=out)
    err = max(float(np.abs(got[k] - ref[k]).max() / np.abs(ref[k]).max()) for k in ref)
    t_end = time.perf_counter() + 0.3                 # warm up (and let other threads settle)
    while time.perf_counter() < t_end:
        exe.run(inputs, out=out)
    print(json.dumps({"rlxpy": rlxpy.__file__, "cold": statistics.median(cold), "hit": hit, "error": err}), flush=True)
    for line in sys.stdin:
        n = int(line)
        times = {"out=": [], "fresh": []}
        for _ in range(n):
            t = time.perf_counter(); exe.run(inputs, out=out); times["out="].append(time.perf_counter() - t)
        for _ in range(n):
            t = time.perf_counter(); exe(**inputs); times["fresh"].append(time.perf_counter() - t)
        print(json.dumps(times), flush=True)
""")


def start(directory: Path, args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(directory)}      # and cwd: `python -c` puts it first on the path
    spec = json.dumps({"config": args.config, "image_size": args.image_size, "threads": args.threads})
    return subprocess.Popen([sys.executable, "-c", WORKER, spec], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env, cwd=directory)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path, nargs="?", default=Path(__file__).resolve().parent.parent)
    ap.add_argument("--config", default="base_plus")
    ap.add_argument("--image-size", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=5)
    args = ap.parse_args()
    args.image_size = (args.image_size, args.image_size)
    names = {"old": args.old.resolve(), "new": args.new.resolve()}
    workers = {}
    for name, directory in names.items():           # one at a time: compile times are not interleaved
        w = start(directory, args)
        workers[name] = (w, json.loads(w.stdout.readline()))
    times = {name: {"out=": [], "fresh": []} for name in names}
    for _ in range(args.rounds):
        for name, (w, _) in workers.items():
            w.stdin.write(f"{args.calls}\n")
            w.stdin.flush()
            for kind, values in json.loads(w.stdout.readline()).items():
                times[name][kind] += values
    for w, _ in workers.values():
        w.stdin.close()
        w.wait()
    print(f"{args.config} {args.image_size[0]}x{args.image_size[1]}, {args.threads} thread(s), "
          f"{args.rounds} rounds x {args.calls} calls, interleaved")
    for name, (_, info) in workers.items():
        print(f"  {name}: {info['rlxpy']}")
    print(f"  {'':6s} {'out= ms':>9s} {'fresh ms':>9s} {'cold compile ms':>16s} {'hit ms':>8s} {'max error':>10s}")
    med = {}
    for name, (_, info) in workers.items():
        med[name] = {k: statistics.median(v) * 1e3 for k, v in times[name].items()}
        print(f"  {name:6s} {med[name]['out=']:9.2f} {med[name]['fresh']:9.2f} {info['cold'] * 1e3:16.1f} "
              f"{info['hit'] * 1e3:8.1f} {info['error']:10.1e}")
    for kind in ("out=", "fresh"):
        print(f"  new / old ({kind}): {med['new'][kind] / med['old'][kind]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
