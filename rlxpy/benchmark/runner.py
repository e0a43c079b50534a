"""Timing: every formulation of the neck interleaved in one process, medians of repeats.

Every repeat runs each row in turn, back to back, so slow drifts of a shared machine (other jobs,
clock changes) hit every row alike. Each row is first called, untimed, for WARM_SECONDS (at least
once), then timed once. That absorbs what the previous row left behind: OpenBLAS's worker threads
keep spinning for ~0.1 s after a call (a 2-thread kernel started right after numpy ran at half
speed), OpenMP's do for a shorter while, and on the VMs this was measured on, cores that were idle
for ~0.1 s run the next ~10 ms slowly (a neck call after a 0.3 s sleep took 1.7x as long). numpy's BLAS (and so the interpreter) and
torch are limited to the same number of threads as rlxpy (threadpoolctl, torch.set_num_threads);
the FMA calibration runs the neck's flop count split over that many threads at once, so its time
is the FMA floor of this run. Other processes' use of the cores over the timed loop is measured
(busy.py) and reported with a warning when they shared the timed cores.
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np

from ..codegen.isa import host_isa
from ..codegen.runtime import aligned_empty
from ..codegen.target import host
from ..errors import RlxError
from ..models.sam2 import FpnNeckConfig, build_fpn_neck_ir, synthetic_fpn_neck_inputs, synthetic_fpn_neck_weights
from . import baselines
from . import tile_ceiling
from .busy import BusyMeter
from .peak import FmaPeak, calibrate

ROWS = ("rlxpy llvm (out=)", "rlxpy llvm (fresh)", "rlxpy interp", "numpy naive", "numpy best",
        "torch NCHW", "torch channels-last")
FLOOR_ROW = "FMA floor (llvmlite calibration)"
# The micro-kernel alone, operands in cache (see tile_ceiling): how close the tile itself gets.
CEILING_ROW = "register tile alone (in cache)"
# Untimed calls of a row before its timed one (see the module docstring).
WARM_SECONDS = 0.2


@dataclass
class Row:
    name: str
    median_ms: float
    times_ms: list[float]
    gflops: float = 0.0
    x_floor: float = 0.0
    vs_numpy_best: float = 0.0
    error: float | None = None          # largest scaled difference from the interpreter's features
    note: str = ""


@dataclass
class BenchResult:
    config: str
    image_size: tuple[int, int]
    batch: int
    threads: int
    repeat: int
    gflop: float
    machine: dict
    peak: dict
    rows: list[Row] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    busy: dict | None = None            # busy.Busy of the timed loop: other processes' use of the cores

    def row(self, name: str) -> Row | None:
        return next((r for r in self.rows if r.name == name), None)

    def to_json(self) -> dict:
        d = asdict(self)
        d["image_size"] = list(self.image_size)
        return d


def machine_info() -> dict:
    h, isa = host(), host_isa()
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cpu_model": model, "llvm_cpu": h.cpu, "triple": h.triple, "vector_isa": isa.describe(),
            "cores_available": _cores(), "llvm": h.llvm_version, "llvmlite": h.llvmlite_version,
            "numpy": np.__version__}


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@contextmanager
def limited_threads(threads: int):
    """numpy's BLAS and torch on `threads` threads for the duration."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise RlxError("rlxpy bench needs threadpoolctl to run numpy on as many threads as rlxpy: "
                       "pip install 'rlxpy[bench]'") from None
    with ExitStack() as stack:
        stack.enter_context(threadpool_limits(limits=threads))
        if baselines.torch_available():
            import torch
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            stack.callback(torch.set_num_threads, before)
        yield


def settled_time(fn) -> float:
    """Seconds of one call of `fn`, timed after untimed calls of it for WARM_SECONDS (at least one)."""
    start = time.perf_counter()
    fn()
    while time.perf_counter() - start < WARM_SECONDS:
        fn()
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def neck_case(cfg: FpnNeckConfig, seed: int = 0):
    return synthetic_fpn_neck_weights(cfg, seed), synthetic_fpn_neck_inputs(cfg, seed)


def _scaled_error(got: dict, ref: dict) -> float:
    worst = 0.0
    for name, r in ref.items():
        if not name.startswith("features"):
            continue
        g = np.asarray(got[name], dtype=np.float64)
        scale = float(np.abs(r).max()) or 1.0
        worst = max(worst, float(np.abs(g - r).max()) / scale)
    return worst


def run_bench(cfg: FpnNeckConfig, threads: int, repeat: int, skip: tuple[str, ...] = (),
              log=lambda s: None, progress=None) -> BenchResult:
    """Every row timed `repeat` times, interleaved. `log` gets a line per phase; `progress`, if
    given, is called as `progress(done, total, row)` after every timed call."""
    import rlxpy

    if repeat < 1:
        raise RlxError(f"--repeat must be at least 1, got {repeat}")
    for name in skip:
        if name not in ROWS:
            raise RlxError(f"--skip {name!r}: no such row; rows are {', '.join(map(repr, ROWS))}")
    with limited_threads(threads):                        # threadpoolctl missing: say so before timing
        pass
    params, inputs = neck_case(cfg)
    log(f"calibrating the FMA peak ({host_isa().describe()})")
    peak = calibrate()
    result = BenchResult(cfg.variant, cfg.image_size, cfg.batch, threads, repeat, cfg.flops() / 1e9,
                         machine_info(), {"lanes": peak.lanes, "chains": peak.chains,
                                          "per_core_gflops_single": peak.per_core})
    log("compiling")
    ceiling = tile_ceiling.build()
    graph = build_fpn_neck_ir(cfg)
    exe = rlxpy.compile(graph, params, target="llvm", threads=threads)
    slow = [s for s in exe.steps if s.node.op == "fused_matmul" and s.rule != "nchw_microkernel"]
    if slow:
        result.skipped["warning"] = "; ".join(
            f"%{s.node.name} ran {s.rule or s.kind} ({'; '.join(s.declined) or s.reason})" for s in slow)
    interp = rlxpy.compile(graph, params, target="interp")
    out = {f"features_{i}": aligned_empty(cfg.output_shape(i)) for i in range(cfg.num_levels)}
    runners = {
        "rlxpy llvm (out=)": lambda: exe.run(inputs, out=out),
        "rlxpy llvm (fresh)": lambda: exe.run(inputs),
        "rlxpy interp": lambda: interp.run(inputs),
        "numpy naive": baselines.numpy_naive(cfg, params, inputs),
        "numpy best": baselines.numpy_best(cfg, params, inputs, aligned_empty),
    }
    if baselines.torch_available():
        runners["torch NCHW"] = baselines.torch_neck(cfg, params, inputs, channels_last=False)
        runners["torch channels-last"] = baselines.torch_neck(cfg, params, inputs, channels_last=True)
    else:
        for name in ("torch NCHW", "torch channels-last"):
            result.skipped[name] = "torch is not installed"
    for name in skip:
        runners.pop(name, None)
        result.skipped[name] = "skipped (--skip)"

    flops = cfg.flops()
    times: dict[str, list[float]] = {name: [] for name in runners}
    times[FLOOR_ROW] = []
    times[CEILING_ROW] = []
    errors: dict[str, float] = {}
    pool = ThreadPoolExecutor(max_workers=threads - 1) if threads > 1 else None
    try:
        with limited_threads(threads):
            reference = interp.run(inputs)
            for name, fn in runners.items():                  # warm-up, and a check of each row
                errors[name] = _scaled_error(fn(), reference)
            peak.run(flops, threads, pool)
            ceiling.run(flops, threads, pool)
            log(f"timing {len(runners) + 2} rows x {repeat} repeats, interleaved")
            order = list(runners)
            order[1:1] = [FLOOR_ROW, CEILING_ROW]
            calls = dict(runners)
            calls[FLOOR_ROW] = lambda: peak.run(flops, threads, pool)
            calls[CEILING_ROW] = lambda: ceiling.run(flops, threads, pool)
            done, total = 0, repeat * len(order)
            meter = BusyMeter(threads)
            for _ in range(repeat):
                for name in order:
                    times[name].append(settled_time(calls[name]))
                    done += 1
                    if progress:
                        progress(done, total, name)
            result.busy = meter.stop().to_json()
    finally:
        if pool is not None:
            pool.shutdown()

    floor = statistics.median(times[FLOOR_ROW])
    best = statistics.median(times["numpy best"]) if "numpy best" in times else None
    for name, ts in times.items():
        med = statistics.median(ts)
        row = Row(name, med * 1e3, [t * 1e3 for t in ts], gflops=flops / med / 1e9, x_floor=med / floor,
                  vs_numpy_best=(best / med) if best else 0.0, error=errors.get(name))
        result.rows.append(row)
    result.peak["per_core_gflops"] = flops / floor / 1e9 / threads
    result.peak["floor_ms"] = floor * 1e3
    return result


@dataclass
class SweepPoint:
    image_size: tuple[int, int]
    batch: int
    gflop: float
    median_ms: float
    linear_ratio: float            # time / (first point's time x work ratio): 1.0 is exactly linear
    step_ratio: float              # the same against the previous point
    x_floor: float


def run_sweep(variant: str, base_size: tuple[int, int], threads: int, repeat: int, options: dict,
              sizes=(512, 1024, 2048), batches=(1, 2, 4), log=lambda s: None,
              progress=None) -> dict[str, list[SweepPoint]]:
    """rlxpy llvm (out=) on growing images (batch 1) and growing batches (at `base_size`);
    `progress(done, total, point)` after every timed repeat."""
    import rlxpy

    series = {"image size": [FpnNeckConfig.for_hiera(variant, (s, s), 1, **options) for s in sizes],
              "batch": [FpnNeckConfig.for_hiera(variant, base_size, b, **options) for b in batches]}
    peak = calibrate()
    pool = ThreadPoolExecutor(max_workers=threads - 1) if threads > 1 else None
    results: dict[str, list[SweepPoint]] = {}
    done, total = 0, repeat * sum(len(cfgs) for cfgs in series.values())
    try:
        for label, cfgs in series.items():
            points = []
            for cfg in cfgs:
                log(f"sweep: {cfg.describe()}")
                params, inputs = neck_case(cfg)
                exe = rlxpy.compile(build_fpn_neck_ir(cfg), params, target="llvm", threads=threads)
                out = {f"features_{i}": aligned_empty(cfg.output_shape(i)) for i in range(cfg.num_levels)}
                exe.run(inputs, out=out)
                ts, floors = [], []
                call = functools.partial(exe.run, inputs, out=out)
                floor = functools.partial(peak.run, cfg.flops(), threads, pool)
                for _ in range(repeat):
                    ts.append(settled_time(call))
                    floors.append(settled_time(floor))
                    done += 1
                    if progress:
                        progress(done, total, f"image {cfg.image_size[0]}x{cfg.image_size[1]} batch {cfg.batch}")
                med = statistics.median(ts)

                def ratio(base: SweepPoint | None) -> float:
                    return 1.0 if base is None else med * 1e3 / (base.median_ms * cfg.flops() / 1e9 / base.gflop)
                points.append(SweepPoint(cfg.image_size, cfg.batch, cfg.flops() / 1e9, med * 1e3,
                                         ratio(points[0] if points else None), ratio(points[-1] if points else None),
                                         med / statistics.median(floors)))
                del exe, out, inputs, call              # free this size before the next
            results[label] = points
    finally:
        if pool is not None:
            pool.shutdown()
    return results


__all__ = ["BenchResult", "CEILING_ROW", "FLOOR_ROW", "FmaPeak", "ROWS", "Row", "SweepPoint", "machine_info", "run_bench", "run_sweep"]
