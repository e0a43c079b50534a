"""What the register tile's loads cost: the neck's micro-kernel in cache, against the FMA peak.

    python benchmarks/tile_operands.py [--repeat 15] [--gflop 2]

Times, interleaved and on one thread, the FMA-peak calibration kernel and three forms of the
register tile `rlxpy bench` reports as "register tile alone (in cache)" (rlxpy/benchmark/
tile_ceiling.py): as the neck runs it (both operands loaded every k), and with the pixel vectors
held in registers (loaded once per block). Both do the same FMAs; the
median rates and their ratio to the peak say how much of the gap between the neck and the FMA
floor the tile's own loads take on this core, before any packing, memory traffic or threads.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rlxpy.benchmark import tile_ceiling  # noqa: E402
from rlxpy.benchmark.peak import calibrate  # noqa: E402
from rlxpy.benchmark.runner import settled_time  # noqa: E402
from rlxpy.codegen.isa import host_isa  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--gflop", type=float, default=2.0, help="work per timed call (GFLOP)")
    args = ap.parse_args()

    flops = args.gflop * 1e9
    peak = calibrate()
    rows = {"FMA peak (calibration)": lambda: peak.run(flops)}
    labels = {"none": "tile, both operands loaded (as in the neck)", "pixels": "tile, pixels held in registers"}
    tiles = [tile_ceiling.build(held=held) for held in tile_ceiling.HELD]
    for t in tiles:
        rows[labels[t.held]] = (lambda t=t: t.run(flops))
    times = {name: [] for name in rows}
    for fn in rows.values():
        fn()
    for _ in range(args.repeat):
        for name, fn in rows.items():
            times[name].append(settled_time(fn))
    shape = tiles[0].shape
    print(f"{host_isa().describe()}; register tile {shape.rows} x {shape.vecs} vectors, K = {tile_ceiling.K}; "
          f"1 thread, median of {args.repeat}")
    base = statistics.median(times["FMA peak (calibration)"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:46s} {flops / med / 1e9:8.1f} GFLOP/s  {base / med:5.2f} of peak")


if __name__ == "__main__":
    main()
