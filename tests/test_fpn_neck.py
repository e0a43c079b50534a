"""The SAM 2 FPN neck through the interpreter against the independent float64 reference."""

import numpy as np
import pytest

import rlxpy
from conftest import scaled_error
from reference import CHANNELS, fpn_neck
from rlxpy.models.sam2 import FpnNeckConfig, build_fpn_neck_ir, synthetic_fpn_neck_weights

TOL = 1e-5  # of each output's largest magnitude


def random_case(cfg, rng):
    inputs = {f"x{i}": rng.uniform(-2, 2, cfg.input_shape(i)).astype(np.float32) for i in range(4)}
    params = {}
    for j, cin in enumerate(cfg.backbone_channel_list):
        params[cfg.weight_key(j)] = rng.standard_normal((256, cin, 1, 1), dtype=np.float32) / np.sqrt(cin)
        params[cfg.bias_key(j)] = rng.standard_normal(256, dtype=np.float32)
    return inputs, params


def check_against_reference(cfg, rng):
    inputs, params = random_case(cfg, rng)
    out = rlxpy.compile(build_fpn_neck_ir(cfg), params=params, target="interp")(**inputs)
    ref = fpn_neck([inputs[f"x{i}"] for i in range(4)], params, fuse_type=cfg.fuse_type,
                   interp=cfg.interp, top_down_levels=cfg.top_down_levels)
    assert list(out) == [f"{kind}_{i}" for i in range(4) for kind in ("features", "pos")]
    for name, expected in ref.items():
        assert out[name].dtype == np.float32 and out[name].flags.c_contiguous
        assert scaled_error(out[name], expected) < TOL, name
    return out


@pytest.mark.parametrize("variant", ["tiny", "small", "base_plus", "large"])
def test_every_variant_matches_reference(variant, rng):
    check_against_reference(FpnNeckConfig.for_hiera(variant, image_size=(64, 64)), rng)


@pytest.mark.parametrize("options", [
    dict(image_size=(64, 96)),                               # non-square
    dict(image_size=(96, 32), batch=2),                      # batch 2, tall
    dict(fuse_type="avg"),
    dict(interp="bilinear"),
    dict(interp="bilinear", fuse_type="avg", image_size=(32, 64)),
    dict(top_down_levels=(0, 1, 2, 3)),
    dict(top_down_levels=(1, 3)),                            # the chain restarts at level 2
    dict(top_down_levels=(0, 2)),                            # level 2 adds level 3; 1 restarts; 0 adds 1
    dict(top_down_levels=()),
])
def test_options_match_reference(options, rng):
    options = {"image_size": (64, 64), **options}
    check_against_reference(FpnNeckConfig.for_hiera("base_plus", **options), rng)


def test_chain_restart_is_observable(rng):
    """top_down_levels=(1, 3): level 2 is its bare lateral, so it differs from the default."""
    cfg = FpnNeckConfig.for_hiera("tiny", image_size=(64, 64), top_down_levels=(1, 3))
    out = check_against_reference(cfg, rng)
    inputs, params = random_case(cfg, np.random.default_rng(5))
    a = rlxpy.compile(build_fpn_neck_ir(cfg), params)(**inputs)
    default = FpnNeckConfig.for_hiera("tiny", image_size=(64, 64))
    b = rlxpy.compile(build_fpn_neck_ir(default), params)(**inputs)
    assert np.array_equal(a["features_3"], b["features_3"])
    assert not np.allclose(a["features_2"], b["features_2"])
    assert out["features_1"].shape == (1, 256, 8, 8)


@pytest.mark.parametrize("variant", ["tiny", "small", "base_plus", "large"])
def test_every_variant_at_1024_has_sam2_shapes(variant):
    cfg = FpnNeckConfig.for_hiera(variant, image_size=(1024, 1024), batch=1)
    g = build_fpn_neck_ir(cfg)
    channels = CHANNELS[variant]
    assert cfg.backbone_channel_list == tuple(channels)
    assert g.input_types["x0"].shape == (1, 256, 256, channels[3])
    assert g.input_types["x3"].shape == (1, 32, 32, channels[0])
    for i, side in enumerate((256, 128, 64, 32)):
        assert g.output_types[f"features_{i}"].shape == (1, 256, side, side)
        assert g.output_types[f"pos_{i}"].shape == (1, 256, side, side)
    assert set(g.param_types) == set(cfg.param_shapes())
    assert g.param_types["image_encoder.neck.convs.0.conv.weight"].shape == (256, channels[0], 1, 1)


def test_graph_structure_follows_options():
    ops = lambda cfg: [n.op for n in build_fpn_neck_ir(cfg)]
    default = ops(FpnNeckConfig.for_hiera("tiny"))
    assert default.count("matmul") == 4 and default.count("pos_encoding") == 4
    assert default.count("upsample_add") == 1 and "scale" not in default
    avg_all = ops(FpnNeckConfig.for_hiera("tiny", fuse_type="avg", top_down_levels=(0, 1, 2, 3)))
    assert avg_all.count("upsample_add") == 3 and avg_all.count("scale") == 3


def test_config_records_sam2_facts():
    cfg = FpnNeckConfig.for_hiera("base_plus", image_size=1024)
    assert cfg.image_size == (1024, 1024) and cfg.scalp == 1 and cfg.d_model == 256
    assert cfg.conv_index(0) == 3 and cfg.channels(0) == 112
    assert abs(cfg.flops() / 1e9 - 7.05) < 0.01


@pytest.mark.parametrize("kwargs, message", [
    (dict(variant="huge"), "unknown Hiera variant 'huge'"),
    (dict(variant="tiny", image_size=(1000, 1024)), "multiples of 32"),
    (dict(variant="tiny", image_size=(0, 32)), "multiples of 32"),
    (dict(variant="tiny", batch=0), "batch must be an integer >= 1"),
    (dict(variant="tiny", fuse_type="max"), "fuse_type must be 'sum' or 'avg'"),
    (dict(variant="tiny", interp="bicubic"), "interp must be 'nearest' or 'bilinear'"),
    (dict(variant="tiny", top_down_levels=(4,)), "top_down_levels must be distinct levels in 0..3"),
])
def test_config_rejects_bad_options(kwargs, message):
    with pytest.raises(rlxpy.RlxError, match=message):
        FpnNeckConfig.for_hiera(**kwargs)


def test_synthetic_weights_are_seeded_and_fit():
    cfg = FpnNeckConfig.for_hiera("small", image_size=64)
    a, b = synthetic_fpn_neck_weights(cfg, 3), synthetic_fpn_neck_weights(cfg, 3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert {k: v.shape for k, v in a.items()} == cfg.param_shapes()
    assert not np.array_equal(a[cfg.bias_key(0)], synthetic_fpn_neck_weights(cfg, 4)[cfg.bias_key(0)])
