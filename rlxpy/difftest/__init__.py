"""Differential testing: random graphs, checking each against the interpreter pass by pass and
kernel by kernel, bisecting the pipeline and reducing failing cases.

    from rlxpy.difftest import seeded_case, check_case, bisect_case, reduce_case
"""

from .bisect import BisectResult, bisect_case
from .check import CheckResult, Mismatch, check_case
from .generate import Case, SeededChooser, random_case, seeded_case
from .reduce import Reduced, reduce_case

__all__ = [
    "BisectResult", "Case", "CheckResult", "Mismatch", "Reduced", "SeededChooser", "bisect_case",
    "check_case", "random_case", "reduce_case", "seeded_case",
]
