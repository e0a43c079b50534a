"""Differential: the SAM 2 neck on target="llvm" against target="interp" and the float64 reference.

Two graphs per case: the neck as built (every op lowered on its own), and the fused form the
default pipeline makes (one fused_matmul per level, position encodings as constants), built here by
hand so that this file does not depend on the passes.
"""

import numpy as np
import pytest

import rlxpy
from conftest import legacy, scaled_error
from reference import fpn_neck
from test_fpn_neck import random_case
from rlxpy import GraphBuilder
from rlxpy.interp import sine_position_encoding
from rlxpy.models.sam2 import FpnNeckConfig, build_fpn_neck_ir

TOL = 1e-5  # of each output's largest magnitude


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("RLXPY_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "neck-cache"))


def fused_neck(cfg: FpnNeckConfig, params: dict) -> rlxpy.Graph:
    """What fold-constants + fuse-epilogue make of the neck: per level one fused_matmul on the
    BHWC input, a [cin, 256] constant weight and the bias, writing NCHW and adding the coarser
    level; the position encodings folded to constants."""
    b = GraphBuilder("fpn_neck_fused")
    xs = [b.input(f"x{i}", cfg.input_shape(i)) for i in range(cfg.num_levels)]
    features, pos, prev = {}, {}, None
    for i in reversed(range(cfg.num_levels)):
        j = cfg.conv_index(i)
        w = b.const(np.ascontiguousarray(params[cfg.weight_key(j)][:, :, 0, 0].T))
        bias = b.const(params[cfg.bias_key(j)])
        if i in cfg.top_down_levels and prev is not None:
            prev = b.fused_matmul(xs[i], w, bias, prev, **legacy(bias=True, perm=(0, 3, 1, 2), upsample=cfg.interp,
                                                                     factor=0.5 if cfg.fuse_type == "avg" else 1.0))
        else:
            prev = b.fused_matmul(xs[i], w, bias, **legacy(bias=True, perm=(0, 3, 1, 2)))
        features[i] = prev
        h, w_ = cfg.level_hw(i)
        pos[i] = b.const(sine_position_encoding(cfg.batch, cfg.d_model, h, w_, cfg.temperature))
    for i in range(cfg.num_levels):
        b.output(f"features_{i}", features[i])
        b.output(f"pos_{i}", pos[i])
    return b.build()


def check(cfg, rng, **options):
    inputs, params = random_case(cfg, rng)
    expected = rlxpy.compile(build_fpn_neck_ir(cfg), params, target="interp")(**inputs)
    ref = fpn_neck([inputs[f"x{i}"] for i in range(4)], params, fuse_type=cfg.fuse_type,
                   interp=cfg.interp, top_down_levels=cfg.top_down_levels)
    for graph, params_ in ((build_fpn_neck_ir(cfg), params), (fused_neck(cfg, params), None)):
        exe = rlxpy.compile(graph, params_, target="llvm", strict=True, **options)
        assert exe.target == "llvm" and "interp" not in exe.placement.values()
        out = exe(**inputs)
        assert list(out) == list(expected)
        for name in expected:
            assert out[name].dtype == np.float32 and out[name].shape == expected[name].shape
            assert scaled_error(out[name], expected[name]) < TOL, (graph.name, name)
            assert scaled_error(out[name], ref[name]) < TOL, (graph.name, name)
    return exe, inputs


@pytest.mark.parametrize("variant", ["tiny", "small", "base_plus", "large"])
def test_every_variant(variant, rng):
    check(FpnNeckConfig.for_hiera(variant, image_size=(64, 64)), rng)


@pytest.mark.parametrize("options", [
    dict(image_size=(64, 96)),                               # non-square
    dict(image_size=(96, 32), batch=2),                      # batch 2, tall
    dict(fuse_type="avg"),
    dict(interp="bilinear"),
    dict(interp="bilinear", fuse_type="avg", image_size=(128, 64)),
    dict(top_down_levels=(0, 1, 2, 3)),
    dict(top_down_levels=(1, 3)),                            # the chain restarts at level 2
    dict(top_down_levels=(0, 2), interp="bilinear"),
    dict(top_down_levels=()),
])
def test_options(options, rng):
    options = {"image_size": (64, 64), **options}
    check(FpnNeckConfig.for_hiera("base_plus", **options), rng)


def test_two_threads_give_the_same_bits(rng):
    """Splitting a kernel's range over threads changes no result: every element is computed the
    same way by whichever thread owns its rows."""
    cfg = FpnNeckConfig.for_hiera("tiny", image_size=(128, 128), interp="bilinear", top_down_levels=(0, 1, 2, 3))
    inputs, params = random_case(cfg, rng)
    one = rlxpy.compile(fused_neck(cfg, params), target="llvm", threads=1)(**inputs)
    exe = rlxpy.compile(fused_neck(cfg, params), target="llvm", threads=2)
    assert exe.threads == 2
    two = exe(**inputs)
    for name in one:
        assert np.array_equal(one[name], two[name]), name


def test_per_node_compare_passes_on_the_neck(rng):
    cfg = FpnNeckConfig.for_hiera("small", image_size=(64, 128), interp="bilinear", fuse_type="avg")
    check(cfg, rng, compare_with="interp")
