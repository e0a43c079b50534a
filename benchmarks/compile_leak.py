"""Memory growth of repeated compiles in one process: does a process that keeps compiling grow?

    python benchmarks/compile_leak.py [--compiles 500] [--warmup 30] [--graph neck|random]
                                      [--no-cache | --cache [miss|hit]] [--hold 20] [--json]

Each compile is `rlxpy.compile(graph, params, target="llvm", cache=...)` with nothing kept alive
afterwards. `--graph neck` compiles the tiny SAM 2 neck at 128x128 again and again; `--graph
random` compiles a new seeded difftest graph every time (new code, new constants, as a difftest run
does). The cache modes: `--no-cache` (the default) is cache=False, a cold compile every time;
`--cache miss` uses a private cache directory whose entry is deleted before each compile (a miss
that also writes the entry); `--cache hit` (or bare `--cache`) fills it once, then every compile
is a hit.

After the warm-up, every compile is followed by `gc.collect()` and two readings: the resident set
(/proc/self/statm), what the operating system sees, and the C heap in use (glibc's mallinfo2:
allocated chunks plus mmapped blocks), where LLVM's objects live and which, unlike the resident
set, does not hide a leak behind memory freed earlier and reused. It prints both after warm-up,
their growth per 100 compiles (least-squares slope over the run) and a verdict against the target:
under 2 MB per 100 compiles. `--hold K` then compiles K executables and keeps them, to show what
a live executable costs (heap, resident set, memory mappings: each JIT engine maps its code), and
drops them, to show that it is given back (engines freed, their mappings gone).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rlxpy.benchmark.memory import heap_mb, mappings, rss_mb  # noqa: E402

TARGET_MB_PER_100 = 2.0


def reading() -> tuple[float, float | None]:
    gc.collect()
    return rss_mb(), heap_mb()


def _malloc_trim() -> bool:
    """Have glibc return the free memory it keeps to the system (False without glibc)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim(ctypes.c_size_t(0))
    return True


def slope_per_100(values: list[float]) -> float:
    """Least-squares growth per 100 compiles of a series with one value per compile."""
    n = len(values)
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    sxx = sum((i - mean_x) ** 2 for i in range(n))
    sxy = sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values))
    return 100 * sxy / sxx if sxx else 0.0


def graphs(kind: str, image_size: int):
    """An endless supply of (graph, params) to compile."""
    if kind == "neck":
        from rlxpy.models.sam2 import FpnNeckConfig, build_fpn_neck_ir, synthetic_fpn_neck_weights
        cfg = FpnNeckConfig.for_hiera("tiny", image_size=(image_size, image_size))
        graph, params = build_fpn_neck_ir(cfg), synthetic_fpn_neck_weights(cfg)
        while True:
            yield graph, params
    from rlxpy.difftest.generate import seeded_case
    seed = 0
    while True:
        case = seeded_case(seed)
        seed += 1
        yield case.graph, case.params


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--compiles", type=int, default=500, help="compiles measured after the warm-up")
    ap.add_argument("--warmup", type=int, default=30, help="compiles before the first reading")
    ap.add_argument("--graph", choices=("neck", "random"), default="neck")
    ap.add_argument("--image-size", type=int, default=128, help="the neck's image side (multiple of 32)")
    ap.add_argument("--cache", nargs="?", const="hit", choices=("off", "miss", "hit"), default="off",
                    help="off (cold compiles), miss (entry deleted before each), hit (filled once)")
    ap.add_argument("--no-cache", dest="cache", action="store_const", const="off")
    ap.add_argument("--hold", type=int, default=20, help="executables kept alive at the end (0: skip)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.compiles < 2 or args.warmup < 0 or args.hold < 0:
        ap.error("--compiles must be at least 2, --warmup and --hold at least 0")

    import rlxpy
    directory = Path(tempfile.mkdtemp(prefix="rlxpy-leak-"))
    try:
        supply = graphs(args.graph, args.image_size)
        cache = False if args.cache == "off" else directory
        statuses: dict[str, int] = {}

        def compile_once():
            graph, params = next(supply)
            if args.cache == "miss":
                shutil.rmtree(directory / "llvm", ignore_errors=True)
            exe = rlxpy.compile(graph, params, target="llvm", cache=cache)
            statuses[exe.cache_status] = statuses.get(exe.cache_status, 0) + 1
            return exe

        for _ in range(args.warmup):
            compile_once()
        statuses.clear()
        start_rss, start_heap = reading()
        rss, heap = [], []
        for i in range(args.compiles):
            compile_once()
            r, h = reading()
            rss.append(r)
            heap.append(h)
            if not args.json and (i + 1) % 100 == 0:
                heap_text = f", heap {h - start_heap:+.2f} MB" if h is not None else ""
                print(f"  {i + 1:5d} compiles: rss {r - start_rss:+.2f} MB{heap_text}", flush=True)

        result = {
            "graph": args.graph, "cache": args.cache, "compiles": args.compiles, "warmup": args.warmup,
            "statuses": dict(statuses),
            "rss_after_warmup_mb": round(start_rss, 2),
            "rss_growth_mb_per_100": round(slope_per_100(rss), 3),
            "rss_total_growth_mb": round(rss[-1] - start_rss, 2),
            "heap_after_warmup_mb": None if start_heap is None else round(start_heap, 2),
            "heap_growth_mb_per_100": None if start_heap is None else round(slope_per_100(heap), 3),
            "heap_total_growth_mb": None if start_heap is None else round(heap[-1] - start_heap, 2),
            "target_mb_per_100": TARGET_MB_PER_100,
        }
        worst = max(result["rss_growth_mb_per_100"], result["heap_growth_mb_per_100"] or 0.0)
        result["verdict"] = "pass" if worst < TARGET_MB_PER_100 else "FAIL"

        if args.hold:
            before = reading(), mappings()
            held = [compile_once() for _ in range(args.hold)]
            live = reading(), mappings()
            del held
            freed = reading(), mappings()
            trimmed = _malloc_trim() and rss_mb()
            hold = {"executables": args.hold,
                    "rss_per_live_mb": round((live[0][0] - before[0][0]) / args.hold, 3),
                    "mappings_per_live": round((live[1] - before[1]) / args.hold, 2),
                    "rss_left_after_drop_mb": round(freed[0][0] - before[0][0], 2),
                    "mappings_left_after_drop": freed[1] - before[1],
                    "rss_left_after_malloc_trim_mb": round(trimmed - before[0][0], 2) if trimmed else None}
            if before[0][1] is not None:
                hold.update(heap_per_live_mb=round((live[0][1] - before[0][1]) / args.hold, 3),
                            heap_left_after_drop_mb=round(freed[0][1] - before[0][1], 2))
            result["hold"] = hold
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    if args.json:
        print(json.dumps(result, indent=2))
        return 0 if result["verdict"] == "pass" else 1
    print(f"{args.graph} graph, cache {args.cache}: {args.compiles} compiles after {args.warmup} of warm-up "
          f"(statuses {result['statuses']})")
    print(f"  after warm-up:  rss {result['rss_after_warmup_mb']:.1f} MB"
          + (f", C heap in use {result['heap_after_warmup_mb']:.1f} MB" if start_heap is not None else ""))
    print(f"  growth per 100: rss {result['rss_growth_mb_per_100']:+.3f} MB"
          + (f", heap {result['heap_growth_mb_per_100']:+.3f} MB" if start_heap is not None else "")
          + f"  (over the run: rss {result['rss_total_growth_mb']:+.2f} MB"
          + (f", heap {result['heap_total_growth_mb']:+.2f} MB)" if start_heap is not None else ")"))
    if "hold" in result:
        h = result["hold"]
        has_heap = "heap_per_live_mb" in h
        print(f"  {h['executables']} live executables, each: rss {h['rss_per_live_mb']:.3f} MB"
              + (f", heap {h['heap_per_live_mb']:.3f} MB" if has_heap else "")
              + f", {h['mappings_per_live']:.1f} mappings")
        print(f"  after dropping them: rss {h['rss_left_after_drop_mb']:+.2f} MB"
              + (f", heap {h['heap_left_after_drop_mb']:+.2f} MB" if has_heap else "")
              + f", {h['mappings_left_after_drop']:+d} mappings"
              + (f"; rss {h['rss_left_after_malloc_trim_mb']:+.2f} MB once malloc_trim gives the allocator's "
                 "free pages back" if h["rss_left_after_malloc_trim_mb"] is not None else ""))
    print(f"  verdict: {result['verdict']} (target: under {TARGET_MB_PER_100:g} MB per 100 compiles)")
    return 0 if result["verdict"] == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
