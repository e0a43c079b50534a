"""Each pass on a Before graph gives the Expected graph (structural equality up to value names),
and keeps the meaning: the interpreter gives the same outputs before and after."""

import numpy as np
import pytest

import rlxpy
from rlxpy import GraphBuilder, PassError
from rlxpy.interp import evaluate
from rlxpy.ir.compare import structural_diff
from rlxpy.models.sam2 import FpnNeckConfig, build_fpn_neck_ir, synthetic_fpn_neck_weights
from rlxpy.params import bind_params
from rlxpy.passes import PASSES, PIPELINES, PassManager, parse_pipeline
from conftest import legacy


def run(pipeline, graph):
    pm = PassManager(pipeline)
    return pm.run(graph), pm.log


def assert_same(actual, expected):
    diff = structural_diff(actual, expected)
    assert diff is None, diff


def random_inputs(graph, rng):
    return {k: rng.standard_normal(t.shape).astype(np.float32) for k, t in graph.input_types.items()}


def assert_meaning_kept(before, after, rng, tol=1e-5):
    inputs = random_inputs(before, rng)
    a, b = evaluate(before, inputs), evaluate(after, inputs)
    assert list(a) == list(b)
    for name in a:
        scale = float(np.abs(a[name]).max()) or 1.0
        assert np.abs(a[name] - b[name]).max() <= tol * scale, name


# -- fold-constants ----------------------------------------------------------------------------

def test_fold_constants_before_expected(rng):
    w = rng.standard_normal(24).astype(np.float32)
    b = GraphBuilder("g")
    x = b.input("x", (2, 4))
    wt = b.transpose(b.reshape(b.const(w), shape=(6, 4)), perm=(1, 0))
    b.output("y", b.matmul(x, wt))
    b.output("pe", b.pos_encoding(batch=1, dim=8, height=2, width=3))
    before = b.build()

    e = GraphBuilder("g")
    x = e.input("x", (2, 4))
    e.const(w)                                          # the operands stay until dce
    e.const(w.reshape(6, 4))
    wt = e.const(w.reshape(6, 4).T)
    e.output("y", e.matmul(x, wt))
    from rlxpy.interp import sine_position_encoding
    e.output("pe", e.const(sine_position_encoding(1, 8, 2, 3)))
    after, log = run("fold-constants", before)
    assert_same(after, e.build())
    assert [n.origin for n in after if n.op == "const"][1:] == ["fold-constants"] * 3
    assert log.applications[0].changed
    assert_meaning_kept(before, after, rng)


def test_fold_constants_leaves_inputs_alone(rng):
    b = GraphBuilder()
    b.output("y", b.scale(b.input("x", (3,)), factor=2.0))
    g = b.build()
    after, log = run("fold-constants", g)
    assert after is g and not log.applications[0].changed


# -- fuse-epilogue -----------------------------------------------------------------------------

def level_graph():
    """One level of the neck, unfused: matmul, bias, to NCHW, add the upsampled coarse map, halve."""
    b = GraphBuilder("g")
    x = b.input("x", (1, 4, 6, 8))
    c = b.input("c", (1, 16, 2, 3))
    w = b.input("w", (8, 16))
    bias = b.input("bias", (16,))
    y = b.transpose(b.bias_add(b.matmul(x, w), bias), perm=(0, 3, 1, 2), name="t")
    y = b.upsample_add(y, c, mode="nearest", name="u")
    b.output("out", b.scale(y, factor=0.5, name="s"))
    return b.build()


def test_fuse_epilogue_before_expected(rng):
    before = level_graph()
    e = GraphBuilder("g")
    x, c, w, bias = e.input("x", (1, 4, 6, 8)), e.input("c", (1, 16, 2, 3)), e.input("w", (8, 16)), e.input("bias", (16,))
    e.output("out", e.fused_matmul(x, w, bias, c, **legacy(bias=True, perm=(0, 3, 1, 2), upsample="nearest", factor=0.5)))
    after, log = run("fuse-epilogue", before)
    assert_same(after, e.build())
    fused = after.of_op("fused_matmul")[0]
    assert fused.origin == "fuse-epilogue" and fused.name == "s"      # takes the last step's name
    assert [r.kind for r in log.remarks] == ["applied"]
    assert_meaning_kept(before, after, rng)


def test_fuse_epilogue_stops_at_a_value_that_is_needed(rng):
    b = GraphBuilder("g")
    x, w, bias = b.input("x", (5, 8)), b.input("w", (8, 16)), b.input("bias", (16,))
    y = b.bias_add(b.matmul(x, w), bias, name="y")
    b.output("y", y)                                                  # needed on its own
    b.output("z", b.scale(y, factor=2.0, name="z"))
    before = b.build()
    e = GraphBuilder("g")
    x, w, bias = e.input("x", (5, 8)), e.input("w", (8, 16)), e.input("bias", (16,))
    y = e.fused_matmul(x, w, bias, **legacy(bias=True))
    e.output("y", y)
    e.output("z", e.scale(y, factor=2.0))
    after, log = run("fuse-epilogue", before)
    assert_same(after, e.build())
    assert [str(r) for r in log.missed()] == [
        "[fuse-epilogue] missed: %z: not fused: its operand %y is also a graph output, so it must be stored"]
    assert_meaning_kept(before, after, rng)


@pytest.mark.parametrize("build, reason", [
    (lambda b, x, w: b.upsample_add(b.input("fine", (10, 32)), b.matmul(x, w)),
     "%0 is not its first operand ('x'), the value an epilogue step acts on"),
    (lambda b, x, w: b.transpose(b.transpose(b.matmul(x, w), perm=(1, 0)), perm=(1, 0)),
     "the chain already stores its result permuted; one transpose per epilogue"),
    (lambda b, x, w: b.scale(b.input("other", (5, 16)), factor=2.0),
     "its operand %other (input) does not end a matmul chain"),
    (lambda b, x, w: b.transpose(b.upsample_add(b.matmul(b.input("x4", (2, 4, 6, 8)), b.input("w4", (8, 16))),
                                                b.input("c4", (2, 4, 3, 8))), perm=(0, 3, 1, 2)),
     "upsample_add before it upsamples the last two axes, which perm [0, 3, 1, 2] moves"),
])
def test_fusion_report_names_every_miss(build, reason, rng):
    b = GraphBuilder("g")
    x, w = b.input("x", (5, 8)), b.input("w", (8, 16))
    b.output("o", build(b, x, w))
    before = b.build()
    after, log = run("fuse-epilogue", before)
    assert any(reason in r.message for r in log.missed()), [str(r) for r in log.remarks]
    assert_meaning_kept(before, after, rng)


def test_fuse_epilogue_options_disable_steps(rng):
    before = level_graph()
    after, log = run("fuse-epilogue{skip=upsample_add}", before)
    assert [n.op for n in after if n.op not in ("input",)] == ["fused_matmul", "upsample_add", "scale"]
    assert "disabled by the option fuse-epilogue{skip=upsample_add}" in log.report()
    after, _ = run("fuse-epilogue{skip=bias_add transpose=false}", before)
    assert [n.op for n in after if n.op != "input"] == ["matmul", "bias_add", "transpose", "upsample_add", "scale"]
    assert_meaning_kept(before, after, rng)


# -- cse and dce ---------------------------------------------------------------------------------

def test_cse_before_expected(rng):
    data = rng.standard_normal(4).astype(np.float32)
    b = GraphBuilder("g")
    x = b.input("x", (3, 4))
    a1 = b.bias_add(x, b.const(data))
    a2 = b.bias_add(x, b.const(data.copy()))                        # same value, another const
    b.output("p", b.scale(a1, factor=2.0))
    b.output("q", b.scale(a2, factor=2.0))
    b.output("r", b.scale(a2, factor=3.0))
    before = b.build()
    e = GraphBuilder("g")
    x = e.input("x", (3, 4))
    a = e.bias_add(x, e.const(data))
    p = e.scale(a, factor=2.0)
    e.output("p", p)
    e.output("q", p)
    e.output("r", e.scale(a, factor=3.0))
    after, _ = run("cse", before)
    assert_same(after, e.build())
    assert_meaning_kept(before, after, rng)


def test_dce_before_expected(rng):
    b = GraphBuilder("g")
    x = b.input("x", (3, 4))
    b.input("unused", (2,))
    b.param("p", (4,))
    b.scale(x, factor=9.0)                                            # dead
    b.output("y", b.scale(x, factor=2.0))
    before = b.build()
    e = GraphBuilder("g")
    x = e.input("x", (3, 4))
    e.input("unused", (2,))
    e.param("p", (4,))
    e.output("y", e.scale(x, factor=2.0))
    after, _ = run("dce", before)
    assert_same(after, e.build())
    assert run("dce", after)[0] is after


# -- the neck through the default pipeline ----------------------------------------------------------

NECK_OPTIONS = [
    ("tiny", {}), ("small", {"image_size": (64, 96)}), ("base_plus", {"batch": 2}),
    ("large", {"fuse_type": "avg", "interp": "bilinear"}),
    ("base_plus", {"top_down_levels": (0, 1, 2, 3), "fuse_type": "avg"}),
    ("tiny", {"top_down_levels": (1, 3)}), ("tiny", {"top_down_levels": ()}),
]


@pytest.mark.parametrize("variant, options", NECK_OPTIONS)
def test_default_pipeline_leaves_one_fused_node_per_level(variant, options, rng):
    cfg = FpnNeckConfig.for_hiera(variant, **{"image_size": (64, 64), **options})
    bound = bind_params(build_fpn_neck_ir(cfg), synthetic_fpn_neck_weights(cfg, 3))
    after, log = run("default", bound)
    ops = [n.op for n in after]
    assert ops.count("fused_matmul") == 4
    assert set(ops) == {"input", "const", "fused_matmul"}
    assert not log.missed()
    for i in range(4):
        assert after[after.outputs[f"pos_{i}"]].op == "const"
        assert after[after.outputs[f"features_{i}"]].op == "fused_matmul"
    assert_meaning_kept(bound, after, rng)


@pytest.mark.parametrize("variant, options", NECK_OPTIONS + [("tiny", {"fuse_type": "avg", "interp": "bilinear",
                                                                     "top_down_levels": (0, 2, 3)})])
@pytest.mark.parametrize("name", sorted(PASSES))
def test_every_pass_keeps_the_neck_meaning(name, variant, options, rng):
    cfg = FpnNeckConfig.for_hiera(variant, **{"image_size": (64, 64), **options})
    bound = bind_params(build_fpn_neck_ir(cfg), synthetic_fpn_neck_weights(cfg, 4))
    folded = run("fold-constants", bound)[0]
    for before in (bound, folded):
        after, _ = run(name, before)
        assert_meaning_kept(before, after, rng)


def test_compile_runs_the_default_pipeline(rng):
    cfg = FpnNeckConfig.for_hiera("tiny", image_size=64)
    exe = rlxpy.compile(build_fpn_neck_ir(cfg), synthetic_fpn_neck_weights(cfg))
    assert exe.pipeline == PIPELINES["default"]
    assert [n.op for n in exe.graph].count("fused_matmul") == 4
    assert "fuse-epilogue report: 4 applied, 0 missed" in exe.fusion_report()
    none = rlxpy.compile(build_fpn_neck_ir(cfg), synthetic_fpn_neck_weights(cfg), pipeline="none")
    inputs = random_inputs(none.graph, rng)
    a, b = exe(**inputs), none(**inputs)
    for k in a:
        assert np.abs(a[k] - b[k]).max() <= 1e-6 * np.abs(b[k]).max()


def test_compile_report_prints_the_fusion_report(capsys):
    cfg = FpnNeckConfig.for_hiera("tiny", image_size=64)
    rlxpy.compile(build_fpn_neck_ir(cfg), synthetic_fpn_neck_weights(cfg),
                  pipeline="fold-constants,fuse-epilogue{skip=scale+upsample_add}", report=True)
    err = capsys.readouterr().err
    assert "fuse-epilogue report: 4 applied, 1 missed" in err
    assert "missed  %features2: not fused: disabled by the option fuse-epilogue{skip=scale+upsample_add}" in err


# -- pipelines ---------------------------------------------------------------------------------------

def test_pipeline_strings_round_trip():
    passes = parse_pipeline(" fold-constants , fuse-epilogue{skip=upsample_add, transpose=0},cse,dce")
    assert ",".join(p.spelling() for p in passes) == "fold-constants,fuse-epilogue{transpose=false skip=upsample_add},cse,dce"
    assert str(PassManager("default")) == PIPELINES["default"]
    assert str(PassManager("default,cse")) == PIPELINES["default"] + ",cse"
    assert str(PassManager("fold-constants{max-elements=10}")) == "fold-constants{max-elements=10}"
    assert PassManager("").passes == [] and PassManager("none").passes == []


@pytest.mark.parametrize("pipeline, message", [
    ("fold-constants,fuse", "unknown pass 'fuse'; passes: cse, dce, fold-constants, fuse-epilogue; pipelines: default, none"),
    ("fuse-epilogue{fast=true}", "pass 'fuse-epilogue' has no option 'fast'; its options: transpose, skip"),
    ("fuse-epilogue{transpose=maybe}", "option 'transpose' expects true or false, got 'maybe'"),
    ("fuse-epilogue{skip=matmul}", "option skip: 'matmul' is not a pointwise or layout op"),
    ("fold-constants{max-elements=lots}", "option 'max-elements' expects an integer, got 'lots'"),
    ("fuse-epilogue{transpose}", "option 'transpose' must be written name=value"),
    ("cse,,dce", "bad pipeline 'cse,,dce' at character 5"),
    ("cse,", "trailing ','"),
    ("fuse-epilogue{skip=upsample_add", "bad pipeline"),
    ("default{x=1}", "pipeline 'default' takes no options"),
])
def test_bad_pipelines(pipeline, message):
    with pytest.raises(PassError) as e:
        PassManager(pipeline)
    assert message in str(e.value)


@pytest.mark.parametrize("variant, options", NECK_OPTIONS)
def test_default_pipeline_gives_exactly_the_hand_fused_neck(variant, options):
    """Before/Expected on the real model: the pipeline's output equals, node for node up to
    names, the neck written by hand as four fused_matmul nodes on folded constants."""
    from test_codegen_neck import fused_neck
    cfg = FpnNeckConfig.for_hiera(variant, **{"image_size": (64, 64), **options})
    params = synthetic_fpn_neck_weights(cfg, 5)
    after, _ = run("default", bind_params(build_fpn_neck_ir(cfg), params))
    assert_same(after, fused_neck(cfg, params))
