"""The attention kernels on the shapes SAM 2's Hiera trunk gives them, against the FMA peak.

    python benchmarks/attention.py [--config base_plus] [--image-size 1024] [--threads 2]
                                   [--repeat 7] [--shapes global,14x14] [--kernels flash,tile]
                                   [--key-block 96] [--exp-stub] [--save FILE.json]

Shapes: every distinct (q, k, v) of the trunk's blocks at that image size (batch 1), worked out as
sam2's hieradet.Hiera builds its blocks: windowed attention, q-pool transitions (fewer queries than
keys) and the global blocks. `--shapes` keeps those whose name contains one of its words. Rows,
interleaved, each warmed before its timed call: every vectorised kernel (`attention_flash`,
`attention_tile`; forced to run where its rule would leave the shape to the other, marked `*`),
`attention_loop` on shapes under SLOW_LOOP_FLOPS, numpy (the interpreter's rule: batched float32
matmuls and an in-place softmax) on the same threads (its BLAS through threadpoolctl when
installed), and the FMA floor: the FMA-peak kernel (rlxpy.benchmark.peak) running the same flop
count on the same threads in the same interleaved loop. "of peak" is the floor's best time over
the row's best time (on a shared machine the best of the repeats is the one least slowed by other
work, for the floor as for the row); GFLOP/s counts the two products (2 Lq Lk (D + Dv) per
problem) over the median time. `--exp-stub` replaces exp in the kernels by a
multiply-add (wrong results: the error column says how wrong): what they would reach if exp cost
one instruction.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import rlxpy  # noqa: E402
from rlxpy.benchmark.peak import calibrate  # noqa: E402
from rlxpy.benchmark.runner import settled_time  # noqa: E402
from rlxpy.codegen import RULES  # noqa: E402
from rlxpy.codegen.isa import host_isa  # noqa: E402
from rlxpy.codegen.rules import attention as attention_rules  # noqa: E402
from rlxpy.codegen.rules import attention_tiled  # noqa: E402
from rlxpy.codegen.target import host  # noqa: E402
from rlxpy.errors import CodegenError  # noqa: E402
from rlxpy.interp import evaluate  # noqa: E402

SLOW_LOOP_FLOPS = 1e9        # attention_loop runs only below this much work (it is the fallback)


def trunk_shapes(variant: str, image: int) -> list[tuple[str, tuple, tuple, tuple, list[int]]]:
    """Every distinct attention of the Hiera trunk, as hieradet.Hiera builds its blocks: (name,
    q shape, k shape, v shape, blocks), batch 1, q/k/v as [windows, heads, tokens, head_dim]."""
    cfg = {"tiny": (96, 1, (1, 2, 7, 2), (5, 7, 9), (8, 4, 14, 7)),
           "small": (96, 1, (1, 2, 11, 2), (7, 10, 13), (8, 4, 14, 7)),
           "base_plus": (112, 2, (2, 3, 16, 3), (12, 16, 20), (8, 4, 14, 7)),
           "large": (144, 2, (2, 6, 36, 4), (23, 33, 43), (8, 4, 16, 8))}[variant]
    dim, heads, stages, global_blocks, window_spec = cfg
    stage_ends = [sum(stages[:i]) - 1 for i in range(1, len(stages) + 1)]
    q_pool_blocks = [e + 1 for e in stage_ends[:-1]]
    side = image // 4                                   # tokens per side after the patch embedding
    found: dict[tuple, tuple[str, list[int]]] = {}
    stage = 1
    for i in range(sum(stages)):
        window = window_spec[stage - 1]
        if i in global_blocks:
            window = 0
        dim_out = dim
        if i - 1 in stage_ends:
            dim_out, heads, stage = dim * 2, heads * 2, stage + 1
        pool = i in q_pool_blocks
        if window:
            windows = math.ceil(side / window) ** 2
            lk = window * window
            lq = (window // 2) ** 2 if pool else lk
            name = f"window {window}x{window}" + (f" q-pool -> {window // 2}x{window // 2}" if pool else "")
        else:
            windows, lk = 1, side * side
            lq = (side // 2) ** 2 if pool else lk
            name = f"global {side}x{side}" + (" q-pool" if pool else "")
        hd = dim_out // heads
        key = ((windows, heads, lq, hd), (windows, heads, lk, hd), (windows, heads, lk, hd))
        found.setdefault(key, (name, []))[1].append(i)
        if pool:
            side //= 2
        dim = dim_out
    return [(name, *key, blocks) for key, (name, blocks) in found.items()]


class ForcedFlash(attention_tiled.AttentionFlash):
    """attention_flash even where its rule leaves the shape to attention_tile."""
    name = "attention_flash*"

    def __init__(self, key_block: int):
        self.key_block = key_block

    def match(self, node, graph, target):
        g = attention_rules.geometry(node, graph)
        return attention_tiled._plan(g, target, min(self.key_block, g.lk), online=True)


class ForcedTile(attention_tiled.AttentionTile):
    name = "attention_tile*"

    def match(self, node, graph, target):
        g = attention_rules.geometry(node, graph)
        spec = attention_tiled._plan(g, target, g.lk, online=False)
        if attention_tiled.buffer_bytes(spec) > attention_tiled.STACK_BYTES:
            raise attention_tiled.Unsupported("over the stack budget")
        return spec


def direct(exe, data: dict, out: np.ndarray):
    """The kernel of a one-attention executable, called straight through ctypes on one thread."""
    step = exe.steps[0]
    fn = exe.program._functions[step.node.name]
    args = [out.ctypes.data] + [data[n].ctypes.data for n in "qkv"]

    def call(exe=exe, arrays=(out, data)):     # holds the engine that owns the code, and the arrays
        fn(*args, 0, step.extent)
    return call


def repeated_time(fn, calls: int) -> float:
    """Seconds per call of `calls` calls in a row (after one untimed call)."""
    fn()
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls


def stub_exp(f, x):
    from rlxpy.codegen.emit.values import Values
    v = Values(f)
    return v.fma(x, v.const(0.01, x), v.const(1.0, x))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="base_plus", choices=("tiny", "small", "base_plus", "large"))
    ap.add_argument("--image-size", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--shapes", default="", help="comma-separated words; a shape runs if its name has one")
    ap.add_argument("--kernels", default="flash,tile,loop,numpy")
    ap.add_argument("--key-block", type=int, default=attention_tiled.KEY_BLOCK)
    ap.add_argument("--exp-stub", action="store_true")
    ap.add_argument("--in-cache", action="store_true",
                    help="as many problems of each shape as fit in 256 KB, one thread, each kernel called "
                         "directly (no executable around it), best of --repeat timings of ~2 ms")
    ap.add_argument("--save", default="")
    args = ap.parse_args()
    if args.exp_stub:
        attention_rules.exp = stub_exp
        attention_tiled.exp = stub_exp
    kernels = args.kernels.split(",")
    if args.in_cache:
        args.threads, kernels = 1, [k for k in kernels if k != "numpy"]

    stack = ExitStack()
    try:
        from threadpoolctl import threadpool_limits
        stack.enter_context(threadpool_limits(limits=args.threads))
        blas = f"numpy BLAS on {args.threads} thread(s)"
    except ImportError:
        blas = "numpy BLAS threads not limited (no threadpoolctl)"

    peak = calibrate()
    peak_threads = peak.per_core * args.threads
    pool = stack.enter_context(ThreadPoolExecutor(args.threads - 1)) if args.threads > 1 else None
    isa = host_isa()
    print(f"host: {host().cpu} ({isa.describe()}); FMA peak {peak.describe()}; {args.threads} thread(s): "
          f"{peak_threads:.0f} GFLOP/s at calibration; {blas}; exp: {'STUB' if args.exp_stub else 'llvm.exp'}; "
          f"key block {args.key_block}" + ("; in cache, kernels called directly" if args.in_cache else ""))
    results = []
    rng = np.random.default_rng(0)
    for name, qs, ks, vs, blocks in trunk_shapes(args.config, args.image_size):
        if args.shapes and not any(w in name for w in args.shapes.split(",")):
            continue
        if args.in_cache:                   # fewer problems, flattened: operands in about 256 KB
            per_problem = 4 * (math.prod(qs[-2:]) + math.prod(ks[-2:]) + math.prod(vs[-2:]))
            count = max(1, min(math.prod(qs[:-2]), (256 << 10) // per_problem))
            qs, ks, vs = ((count,) + s[-2:] for s in (qs, ks, vs))
        b = rlxpy.GraphBuilder("attn")
        b.output("y", b.attention(b.input("q", qs), b.input("k", ks), b.input("v", vs)))
        graph = b.build()
        data = {n: rng.standard_normal(s).astype(np.float32) for n, s in (("q", qs), ("k", ks), ("v", vs))}
        flops = 2 * math.prod(qs[:-1]) * ks[-2] * (qs[-1] + vs[-1])
        ref = evaluate(graph, data)["y"]
        out = np.empty(ref.shape, np.float32)
        rows = {}
        chosen = rlxpy.compile(graph, target="llvm", cache=False, threads=args.threads)
        for kernel in kernels:
            if kernel == "numpy":
                rows["numpy (interp rule)"] = lambda: evaluate(graph, data)
                continue
            if kernel == "loop" and flops > SLOW_LOOP_FLOPS:
                continue
            rule = {"flash": ForcedFlash(args.key_block), "tile": ForcedTile(),
                    "loop": attention_rules.AttentionLoop()}[kernel]
            RULES.overrides["attention"] = [rule]
            try:
                exe = rlxpy.compile(graph, target="llvm", cache=False, threads=args.threads, strict=True)
            except CodegenError as e:
                print(f"  {name}: {kernel} does not run: {e}")
                continue
            finally:
                RULES.overrides.pop("attention", None)
            got = exe(**data)["y"]
            err = float(np.abs(got - ref).max() / np.abs(ref).max())
            label = rule.name if rule.name != chosen.steps[0].rule + "*" else chosen.steps[0].rule
            rows[label] = ((direct(exe, data, out) if args.in_cache else lambda exe=exe: exe(**data)), err)
        rows["FMA floor"] = lambda: peak.run(flops, args.threads, pool)
        times = {r: [] for r in rows}
        calls = max(1, int(2e-3 * peak.per_core * 1e9 / flops)) if args.in_cache else 1
        for _ in range(args.repeat * (4 if args.in_cache else 1)):
            for r, fn in rows.items():
                call = fn[0] if isinstance(fn, tuple) else fn
                times[r].append(settled_time(call) if calls == 1 else repeated_time(call, calls))
        print(f"\n{name}: q {list(qs)} k {list(ks)} v {list(vs)}; blocks {blocks}; {flops / 1e9:.3g} GFLOP; "
              f"rule chosen: {chosen.steps[0].rule}")
        print(f"  {'kernel':24s} {'median ms':>10s} {'best ms':>9s} {'GFLOP/s':>9s} {'of peak':>8s} {'max err':>9s}")
        floor = min(times["FMA floor"]) * 1e3
        for r, fn in rows.items():
            ms = statistics.median(times[r]) * 1e3
            err = fn[1] if isinstance(fn, tuple) else None
            rate = flops / (ms / 1e3) / 1e9
            shown = "" if err is None else f"{err:9.1e}"
            best = min(times[r]) * 1e3
            print(f"  {r:24s} {ms:10.3f} {best:9.3f} {rate:9.1f} {floor / best:8.1%} {shown}")
            results.append({"shape": name, "q": qs, "k": ks, "v": vs, "blocks": blocks, "kernel": r,
                            "median_ms": ms, "best_ms": best, "times_ms": [t * 1e3 for t in times[r]],
                            "gflops": rate, "of_peak": floor / best, "error": err})
    if args.save:
        Path(args.save).write_text(json.dumps({
            "host": host().cpu, "isa": isa.describe(), "threads": args.threads, "peak_per_core": peak.per_core,
            "exp": "stub" if args.exp_stub else "llvm.exp", "key_block": args.key_block,
            "in_cache": args.in_cache, "rows": results,
            "command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d")}, indent=1))


if __name__ == "__main__":
    main()
