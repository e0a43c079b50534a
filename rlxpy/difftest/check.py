"""Checking one graph: the interpreter on the unoptimised graph is the oracle, and everything else
must agree with it within `Budget`:

1. translation validation: the interpreter on the graph after EACH pass application; the first
   application whose graph computes something else is named (a pass that raises is named too);
2. the native code for the optimised graph, whole;
3. the native code node by node: every kernel run on the operands the native plan gave it,
   against its interpreter rule, so that a wrong kernel is named even when the outputs happen to
   hide it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ..errors import PassError, RlxError
from ..interp import evaluate, evaluate_node
from ..ir.graph import Graph
from ..params import bind_params
from ..passes import Instrument, Pass, PassManager
from ..numerics import Budget, node_budget


@dataclass(frozen=True)
class Mismatch:
    stage: str          # "pass" (translation validation), "crash" (a pass raised), "native", "kernel"
    culprit: str        # the pass as spelled in the pipeline, or the node "%name (op)"
    what: str           # the pass name or the op name: what "the same mismatch" means when reducing
    output: str         # the output (or node) that disagrees
    detail: str

    @property
    def signature(self) -> tuple[str, str]:
        return self.stage, self.what

    def __str__(self) -> str:
        where = {"pass": "after pass", "crash": "pass", "native": "native code,", "kernel": "kernel"}[self.stage]
        if self.stage == "kernel":           # the culprit already names the node
            return f"{where} {self.culprit}: {self.detail}"
        return f"{where} {self.culprit}: {self.output}: {self.detail}"


@dataclass
class CheckResult:
    mismatches: list[Mismatch] = field(default_factory=list)
    applications: list[str] = field(default_factory=list)
    nodes: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.mismatches

    @property
    def first(self) -> Mismatch | None:
        return self.mismatches[0] if self.mismatches else None


class _Capture(Instrument):
    """Keeps the graph after every pass application, and which pass is running."""

    def __init__(self):
        self.after: list[tuple[str, Graph]] = []
        self.running: Pass | None = None

    def before_pass(self, p, index, graph):
        self.running = p

    def after_pass(self, p, index, before, after, changed, seconds):
        self.after.append((p.spelling(), after))


def compare_outputs(budget: Budget, outputs: Mapping[str, np.ndarray],
                    oracle: Mapping[str, np.ndarray]) -> tuple[str, str] | None:
    """(output, detail) of the first output outside its budget, or None."""
    for name, expected in oracle.items():
        if name not in outputs:
            return name, "missing from the results"
        why = budget.compare(name, np.asarray(outputs[name]), expected)
        if why:
            return name, why
    return None


def check_case(graph: Graph, inputs: Mapping[str, np.ndarray], *, params: Mapping | None = None,
               pipeline: str = "default", target: str = "interp") -> CheckResult:
    """Check `graph` on `inputs` through `pipeline` and, with target "llvm", the native code."""
    start = time.perf_counter()
    bound = bind_params(graph, params) if graph.params else graph
    result = CheckResult(nodes=len(bound))
    oracle = evaluate(bound, inputs)
    budget = Budget.of(bound, inputs)

    capture = _Capture()
    pm = PassManager(pipeline, instruments=[capture])
    try:
        optimised = pm.run(bound)
    except PassError as e:
        p = capture.running
        result.mismatches.append(Mismatch("crash", p.spelling() if p else pipeline, p.name if p else "?",
                                          "-", str(e).split("; reproducer:")[0]))
        optimised = None
    result.applications = [spelling for spelling, _ in capture.after]
    for spelling, after in capture.after:
        bad = compare_outputs(budget, evaluate(after, inputs), oracle)
        if bad:
            result.mismatches.append(Mismatch("pass", spelling, spelling.split("{")[0], *bad))
            break
    if target == "llvm" and optimised is not None:
        result.mismatches += _check_native(optimised, inputs, oracle, budget)
    result.seconds = time.perf_counter() - start
    return result


def _check_native(graph: Graph, inputs, oracle, budget: Budget) -> list[Mismatch]:
    from ..codegen import compile_llvm
    try:
        exe = compile_llvm(graph, graph, cache=False)
        outputs = exe(**inputs)
    except RlxError as e:
        return [Mismatch("native", "compile", "compile", "-", str(e))]
    found = check_kernels(exe, inputs)          # the most specific finding first: a named kernel
    bad = compare_outputs(budget, outputs, oracle)
    if bad:
        found.append(Mismatch("native", f"@{graph.name}", "outputs", *bad))
    return found


def check_kernels(exe, inputs) -> list[Mismatch]:
    """Every native node against its interpreter rule, on the operands the native plan gave it,
    within the node's own budget (`numerics.node_budget`)."""
    values = exe.trace(**inputs)                 # every value as the native plan computed it
    graph = exe.graph
    for node in graph.nodes:
        if exe.placement.get(node.name) != "native":
            continue
        operands = [values[o] for o in node.operands]
        expected = evaluate_node(node, operands)
        budget = node_budget(node, operands, [graph.type_of(o) for o in node.operands])
        why = budget.compare("out", values[node.name], expected)
        if why:
            return [Mismatch("kernel", f"%{node.name} ({node.op})", node.op, node.name, why)]
    return []
