"""The benchmark behind `rlxpy bench`: the SAM 2 neck on rlxpy's native kernels against the
interpreter, numpy (naive and best formulations) and torch, with this machine's FMA floor measured
in the same run.

    from rlxpy.benchmark import run_bench, table
    print(table(run_bench(FpnNeckConfig.for_hiera("base_plus"), threads=2, repeat=10)))
"""

from .peak import FmaPeak, calibrate
from .report import plot, sweep_table, table, to_json
from .runner import BenchResult, Row, SweepPoint, run_bench, run_sweep

__all__ = ["BenchResult", "FmaPeak", "Row", "SweepPoint", "calibrate", "plot", "run_bench", "run_sweep",
           "sweep_table", "table", "to_json"]
