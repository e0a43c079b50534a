"""Finding the first pass application that changes a result, with the pass manager's bisect limit
(as LLVM's opt-bisect): with a limit of N only the first N applications run. If the result is right
with no passes and wrong with all of them, a binary search over N finds the application that
breaks it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from ..interp import evaluate
from ..ir.graph import Graph
from ..passes import PassManager
from .check import check_kernels, compare_outputs
from ..numerics import Budget


@dataclass
class BisectResult:
    verdict: str                       # "pass", "no-pass" (fault outside the passes), "clean"
    application: int | None = None     # 1-based index of the guilty application
    spelling: str = ""                 # the guilty pass as spelled in the pipeline
    detail: str = ""
    probes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if self.verdict == "pass":
            return f"first bad pass application: ({self.application}) {self.spelling}: {self.detail}"
        if self.verdict == "no-pass":
            return f"wrong even with no passes: the fault is outside the passes ({self.detail})"
        return "the result is right after every pass application: nothing to bisect"


def bisect_case(graph: Graph, inputs: Mapping[str, np.ndarray], *, pipeline: str = "default",
                target: str = "interp", log: Callable[[str], None] | None = None) -> BisectResult:
    oracle = evaluate(graph, inputs)
    budget = Budget.of(graph, inputs)
    total = len(PassManager(pipeline).passes)
    result = BisectResult("clean")
    exes = {}

    def wrong(limit: int) -> str | None:
        pm = PassManager(pipeline, opt_bisect_limit=limit, stream=_Null())
        optimised = pm.run(graph)
        if target == "llvm":
            from ..codegen import compile_llvm
            exes[limit] = compile_llvm(optimised, optimised, cache=False)
            outputs = exes[limit](**inputs)
        else:
            outputs = evaluate(optimised, inputs)
        bad = compare_outputs(budget, outputs, oracle)
        line = f"BISECT: limit {limit}/{total}: " + ("wrong: " + " ".join(bad) if bad else "right")
        result.probes.append(line)
        if log:
            log(line)
        return " ".join(bad) if bad else None

    last = wrong(total)
    if last is None:
        return result
    first = wrong(0)
    if first is not None:
        result.verdict, result.detail = "no-pass", first
        if target == "llvm":
            kernels = check_kernels(exes[0], inputs)
            if kernels:
                result.detail = f"kernel {kernels[0].culprit}: {kernels[0].detail}"
        return result
    good, bad, why = 0, total, last            # wrong(good) is None, wrong(bad) is not
    while bad - good > 1:
        mid = (good + bad) // 2
        found = wrong(mid)
        if found is None:
            good = mid
        else:
            bad, why = mid, found
    passes = PassManager(pipeline).passes
    result.verdict, result.application, result.spelling, result.detail = "pass", bad, passes[bad - 1].spelling(), why
    return result


class _Null:
    def write(self, text: str) -> None: ...
    def flush(self) -> None: ...
