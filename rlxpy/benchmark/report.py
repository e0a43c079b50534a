"""Printing `rlxpy bench` results: a text table, JSON, and a bar chart (matplotlib, optional)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import RlxError
from .busy import Busy
from .runner import CEILING_ROW, FLOOR_ROW, BenchResult, SweepPoint


def header(result: BenchResult) -> str:
    m, p = result.machine, result.peak
    h, w = result.image_size
    return "\n".join([
        f"SAM 2 FPN neck, hiera-{result.config}, image {h}x{w}, batch {result.batch}: "
        f"{result.gflop:.2f} GFLOP in the 1x1 convs; {result.threads} thread(s) in every row",
        f"machine: {m['cpu_model'] or '?'} (LLVM cpu {m['llvm_cpu']}; {m['vector_isa']}; "
        f"{m['cores_available']} core(s) available)",
        f"FMA peak: {p['lanes']}-lane FMA x {p['chains']} chains, {p['per_core_gflops']:.1f} GFLOP/s per core "
        f"with {result.threads} thread(s) running -> floor {p['floor_ms']:.2f} ms; "
        f"median of {result.repeat} interleaved repeats",
    ])


def table(result: BenchResult) -> str:
    lines = [header(result), ""]
    width = max(len(r.name) for r in result.rows)
    lines.append(f"{'':<{width}}  {'median ms':>10}  {'GFLOP/s':>8}  {'x floor':>8}  {'vs numpy best':>13}  {'max error':>9}")
    for r in result.rows:
        err = "" if r.error is None else f"{r.error:.1e}"
        vs = f"{r.vs_numpy_best:.2f}x" if r.vs_numpy_best else "-"
        lines.append(f"{r.name:<{width}}  {r.median_ms:>10.2f}  {r.gflops:>8.1f}  {r.x_floor:>7.2f}x  {vs:>13}  {err:>9}")
    for name, why in result.skipped.items():
        lines.append(f"({name}: {why})")
    lines += busy_lines(result.busy)
    lines.append("max error: largest |difference| from the interpreter over each features output, "
                 "relative to its largest magnitude")
    return "\n".join(lines)


def busy_lines(busy: dict | None) -> list[str]:
    """The machine's load while timing, and the warning when others shared the timed cores."""
    if not busy:
        return []
    lines = [f"load: {Busy(**busy).describe()}"]
    if busy["warning"]:
        lines.append(f"WARNING: {busy['warning']}")
    return lines


def sweep_table(results: dict[str, list[SweepPoint]], busy: dict | None = None) -> str:
    lines = ["rlxpy llvm (out=): time against work; linear = 1.00 (time / (earlier time x work ratio)) "
             "against the first point and the previous one"]
    for label, points in results.items():
        lines.append(f"  by {label}:")
        for p in points:
            h, w = p.image_size
            lines.append(f"    image {h:>4}x{w:<4} batch {p.batch}  {p.gflop:7.2f} GFLOP  {p.median_ms:9.2f} ms  "
                         f"linear ratio {p.linear_ratio:5.2f} (step {p.step_ratio:5.2f})  x floor {p.x_floor:5.2f}")
    return "\n".join(lines + busy_lines(busy))


def to_json(result: BenchResult | None, sweep: dict[str, list[SweepPoint]] | None,
            sweep_busy: dict | None = None) -> str:
    doc: dict = {}
    if result is not None:
        doc["bench"] = result.to_json()
    if sweep is not None:
        doc["sweep"] = {label: [dict(image_size=list(p.image_size), batch=p.batch, gflop=p.gflop,
                                     median_ms=p.median_ms, linear_ratio=p.linear_ratio, step_ratio=p.step_ratio,
                                     x_floor=p.x_floor)
                                for p in points] for label, points in sweep.items()}
        doc["sweep_busy"] = sweep_busy
    return json.dumps(doc, indent=2)


def pyplot():
    """matplotlib.pyplot on a file-only backend, or a one-line error when it is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RlxError("--plot needs matplotlib: pip install 'rlxpy[bench]'") from None
    return plt


def plot(result: BenchResult, path: str | Path) -> None:
    """A horizontal bar per row (median ms) with the FMA floor as a line."""
    plt = pyplot()
    rows = [r for r in result.rows if r.name != FLOOR_ROW]
    floor = result.peak["floor_ms"]
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(rows) + 1.4), dpi=100)
    names = [r.name for r in rows][::-1]
    values = [r.median_ms for r in rows][::-1]
    colors = ["#2a7ab9" if n.startswith("rlxpy llvm") else "#d9962b" if n == CEILING_ROW else "#9a9a9a"
              for n in names]
    ax.barh(names, values, color=colors)
    ax.axvline(floor, color="#c0392b", linestyle="--", linewidth=1.2, label=f"FMA floor {floor:.1f} ms")
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.1f} ms ({v / floor:.2f}x)", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("median ms (log scale)")
    h, w = result.image_size
    ax.set_title(f"SAM 2 neck, hiera-{result.config} {h}x{w} batch {result.batch}, {result.threads} thread(s)\n"
                 f"{result.machine['cpu_model'] or result.machine['llvm_cpu']}", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_xlim(right=max(values) * 4)
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as e:
        raise RlxError(f"--plot {path}: {e}") from None
    finally:
        plt.close(fig)
