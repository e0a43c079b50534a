"""Differential testing finds planted miscompiles, names them and shrinks them."""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
from hypothesis import given, settings

from rlxpy.cli import main
from rlxpy.difftest import bisect_case, check_case, reduce_case, seeded_case
from rlxpy.difftest.reproducer import load_reproducer
from rlxpy.difftest.strategies import cases
from rlxpy.numerics import Budget
from rlxpy.ir import GraphBuilder
from rlxpy.ir.textio import load_graph
from rlxpy.params import bind_params
from rlxpy.passes import PASSES
from rlxpy.passes.fuse_epilogue import FuseEpilogue

BUGGY = "fold-constants,test-fuse-drops-bias,cse,dce"


@dataclass(frozen=True)
class FuseDropsBias(FuseEpilogue):
    """A planted miscompile: fusion forgets the bias when the channel count is odd."""
    name: ClassVar[str] = "test-fuse-drops-bias"

    def _fuse(self, graph, matmul, chain):
        node = super()._fuse(graph, matmul, chain)
        steps = list(node.attrs["epilogue"])
        if steps and steps[0].op == "bias_add" and chain[0].type.shape[-1] % 2 == 1:
            operands = list(node.operands)
            del operands[2]
            node = node.with_(operands=tuple(operands), attrs={**node.attrs, "epilogue": tuple(steps[1:])})
        return node


@pytest.fixture
def planted(monkeypatch):
    monkeypatch.setitem(PASSES, FuseDropsBias.name, FuseDropsBias)


def first_failing_seed(pipeline, target="interp", limit=200):
    for seed in range(limit):
        case = seeded_case(seed)
        result = check_case(case.graph, case.inputs, params=case.params, pipeline=pipeline, target=target)
        if not result.ok:
            return seed, case, result
    raise AssertionError("no failing case")


# -- the generator ---------------------------------------------------------------------------------

def test_generator_is_seeded_and_covers_the_vocabulary():
    from rlxpy.ir.printer import print_graph
    assert print_graph(seeded_case(7).graph) == print_graph(seeded_case(7).graph)
    assert print_graph(seeded_case(7).graph) != print_graph(seeded_case(8).graph)
    ops, shared, multi_out, odd, unit = set(), 0, 0, False, False
    for seed in range(60):
        case = seeded_case(seed)
        g = case.graph
        ops |= {n.op for n in g}
        shared += any(len(g.users(n.name)) > 1 for n in g)
        multi_out += len(g.outputs) > 1
        dims = {d for n in g for d in n.type.shape}
        odd |= any(d % 2 for d in dims if d > 1)
        unit |= 1 in dims
        for k, v in {**case.inputs, **case.params}.items():
            assert v.dtype == np.float32 and np.all(np.abs(v) >= 0.1), k     # random, never zero
    from rlxpy.ir.ops import FUSED, OPS
    assert ops == {name for name, op in OPS.items() if not op.has(FUSED)}    # every op, by its traits
    assert shared > 20 and multi_out > 20 and odd and unit


@settings(max_examples=60, deadline=None)
@given(cases(max_nodes=10))
def test_real_pipeline_keeps_meaning_on_hypothesis_graphs(case):
    result = check_case(case.graph, case.inputs, params=case.params, pipeline="default")
    assert result.ok, str(result.first)


# -- the tolerance model ----------------------------------------------------------------------------

def test_budget_allows_rounding_but_not_a_dropped_bias(rng):
    b = GraphBuilder("g")
    x, w, bias = b.input("x", (4, 64)), b.input("w", (64, 8)), b.input("b", (8,))
    b.output("y", b.bias_add(b.matmul(x, w), bias))
    g = b.build()
    inputs = {"x": rng.standard_normal((4, 64)).astype(np.float32),
              "w": rng.standard_normal((64, 8)).astype(np.float32),
              "b": rng.uniform(0.5, 1, 8).astype(np.float32)}
    budget = Budget.of(g, inputs)
    exact = inputs["x"].astype(np.float64) @ inputs["w"] + inputs["b"]
    float32 = (inputs["x"] @ inputs["w"] + inputs["b"]).astype(np.float32)
    assert budget.compare("y", float32, exact) is None
    reordered = (inputs["x"][:, ::-1] @ inputs["w"][::-1]).astype(np.float32) + inputs["b"]
    assert budget.compare("y", reordered, exact) is None
    assert "off by" in budget.compare("y", (inputs["x"] @ inputs["w"]).astype(np.float32), exact)
    with_nan = float32.copy()
    with_nan[1, 2] = np.nan
    assert budget.compare("y", with_nan, exact).startswith("nan at [1, 2] where the oracle has")


def test_a_fused_epilogue_keeps_the_magnitude_of_each_step(rng):
    """matmul -> scale by a negative factor -> relu, fused: taken whole on magnitudes, the negative
    scale then the relu gave a magnitude of 0 where the result is positive (no rounding allowed)."""
    from rlxpy.ir.ops import Step
    b = GraphBuilder("g")
    x, w = b.input("x", (6, 16)), b.input("w", (16, 5))
    b.output("y", b.fused_matmul(x, w, epilogue=(Step.of("scale", factor=-1.5), Step.of("relu"))))
    g = b.build()
    inputs = {"x": rng.standard_normal((6, 16)).astype(np.float32), "w": rng.standard_normal((16, 5)).astype(np.float32)}
    budget = Budget.of(g, inputs)
    exact = np.maximum(-1.5 * (inputs["x"].astype(np.float64) @ inputs["w"]), 0)
    assert (budget.magnitude["y"] >= 1.5 * np.abs(inputs["x"]) @ np.abs(inputs["w"]) * 0.999).all()
    assert budget.compare("y", np.maximum(-1.5 * (inputs["x"] @ inputs["w"]), 0).astype(np.float32), exact) is None


# -- finding, bisecting and reducing a planted pass ------------------------------------------------

def test_planted_pass_is_found_bisected_and_reduced(planted):
    seed, case, result = first_failing_seed(BUGGY)
    assert result.first.stage == "pass" and result.first.culprit == "test-fuse-drops-bias"
    graph = bind_params(case.graph, case.params)
    verdict = bisect_case(graph, case.inputs, pipeline=BUGGY)
    assert verdict.verdict == "pass" and verdict.application == 2 and verdict.spelling == "test-fuse-drops-bias"
    reduced = reduce_case(graph, case.inputs, pipeline=BUGGY)
    assert len(reduced.graph) <= 4, [f"{n.name}={n.op}" for n in reduced.graph]
    assert reduced.mismatch.signature == ("pass", "test-fuse-drops-bias")
    assert check_case(reduced.graph, reduced.inputs, pipeline="default").ok   # the real pass is right


def test_difftest_cli_writes_a_reproducer_that_replays(planted, tmp_path, capsys):
    code = main(["difftest", "--count", "30", "--pipeline", BUGGY, "--target", "interp", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "mismatch: seed" in out and "after pass test-fuse-drops-bias" in out
    summary = [line for line in out.splitlines() if line.startswith("difftest:")][0]
    assert summary.startswith("difftest: 30 graphs, ") and " mismatches, " in summary
    from pathlib import Path
    folder = Path(out.split("reproducer: ")[1].splitlines()[0])        # the first failure is reduced
    assert {p.name for p in folder.iterdir()} >= {"case.rlx", "inputs.npz", "case.json", "COMMAND", "reduced.rlx",
                                                  "reduced.inputs.npz"}
    assert len(load_graph(folder / "reduced.rlx")) <= 4
    assert "bisect: first bad pass application: (2) test-fuse-drops-bias" in out
    assert load_reproducer(folder).pipeline == BUGGY
    assert main(["replay", str(folder)]) == 1
    assert "after pass test-fuse-drops-bias" in capsys.readouterr().out
    assert main(["bisect", str(folder / "case.rlx"), "--pipeline", BUGGY, "--target", "interp"]) == 0
    assert "first bad pass application: (2) test-fuse-drops-bias" in capsys.readouterr().out
    small = tmp_path / "small.rlx"
    assert main(["reduce", str(folder / "case.rlx"), "--pipeline", BUGGY, "--target", "interp", "-o", str(small)]) == 0
    assert len(load_graph(small)) <= 4 and (tmp_path / "small.inputs.npz").exists()


def test_difftest_cli_passes_on_the_real_pipeline(capsys):
    assert main(["difftest", "--count", "40", "--seed", "1000", "--target", "interp"]) == 0
    assert "40 graphs" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["difftest", "--count", "0"], "--count and --max-nodes must be >= 1"),
    (["difftest", "--pipeline", "nope"], "unknown pass 'nope'"),
    (["replay", "/nonexistent"], "is not a reproducer folder"),
    (["bisect", "/nonexistent.rlx"], "not found"),
])
def test_difftest_cli_errors(args, message, capsys):
    assert main(args) == 2
    assert message in capsys.readouterr().err


# -- a planted wrong kernel ----------------------------------------------------------------------------

@pytest.fixture
def wrong_kernel(monkeypatch, tmp_path):
    """A planted miscompile in a kernel: scale multiplies by factor + 1 when the tensor has an odd
    number of elements."""
    from planted import ScaleRule
    from rlxpy.codegen import RULES
    monkeypatch.setitem(RULES.overrides, "scale", [ScaleRule("planted-wrong", offset=1.0, odd_only=True)])
    monkeypatch.setenv("RLXPY_CACHE_DIR", str(tmp_path / "cache"))


def test_planted_kernel_is_found_named_and_reduced(wrong_kernel):
    seed, case, result = first_failing_seed("default", target="llvm")
    kernel = [m for m in result.mismatches if m.stage == "kernel"]
    assert kernel and kernel[0].what == "scale", [str(m) for m in result.mismatches]
    assert all(m.stage in ("kernel", "native") for m in result.mismatches)   # no pass is blamed
    graph = bind_params(case.graph, case.params)
    verdict = bisect_case(graph, case.inputs, target="llvm")
    assert verdict.verdict == "no-pass" and "(scale)" in verdict.detail
    reduced = reduce_case(graph, case.inputs, target="llvm")
    assert len(reduced.graph) <= 4, [f"{n.name}={n.op}" for n in reduced.graph]
    assert reduced.mismatch.signature[1] == "scale"


def test_real_kernels_agree_on_random_graphs():
    """The native side of CI's 200 graphs runs in test_difftest_cli_200_graphs_native."""
    for seed in range(2000, 2010):
        case = seeded_case(seed)
        result = check_case(case.graph, case.inputs, params=case.params, target="llvm")
        assert result.ok, str(result.first)


def test_difftest_cli_200_graphs_native(capsys):
    assert main(["difftest", "--count", "200", "--seed", "0", "--target", "llvm"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("difftest: 200 graphs, ") and ", 0 mismatches, " in line
