"""rlxpy against outputs of the official SAM 2 FpnNeck, stored in tests/data (see make_sam2_golden.py).

The inputs and weights are rebuilt from integer hashing, so this runs without torch; the official
outputs were made by sam2 1.1.0 on torch 2.13.0 (CPU, float32).
"""

import json
from pathlib import Path

import numpy as np
import pytest

import rlxpy
from conftest import scaled_error
from reference import fpn_neck, golden_case_data
from rlxpy.models.sam2 import FpnNeckConfig, build_fpn_neck_ir

GOLDEN = sorted((Path(__file__).parent / "data").glob("sam2_golden_*.npz"))


def load_case(path):
    data = np.load(path)
    case = json.loads(str(data["config"]))
    return case, {k: data[k] for k in data.files if k != "config"}


def test_golden_files_are_present():
    assert len(GOLDEN) == 2


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_interp_matches_official_sam2(path):
    case, official = load_case(path)
    xs, params = golden_case_data(case["variant"], tuple(case["image_size"]), case["batch"])
    cfg = FpnNeckConfig.for_hiera(case["variant"], tuple(case["image_size"]), case["batch"],
                                  fuse_type=case["fuse_type"], interp=case["interp"],
                                  top_down_levels=tuple(case["top_down_levels"]))
    out = rlxpy.compile(build_fpn_neck_ir(cfg), params)(**{f"x{i}": x for i, x in enumerate(xs)})
    assert set(out) == set(official)
    for name, expected in official.items():
        assert scaled_error(out[name], expected) < 1e-5, name


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_reference_matches_official_sam2(path):
    """The float64 reference the other tests trust is itself checked against the official model."""
    case, official = load_case(path)
    xs, params = golden_case_data(case["variant"], tuple(case["image_size"]), case["batch"])
    ref = fpn_neck(xs, params, fuse_type=case["fuse_type"], interp=case["interp"],
                   top_down_levels=case["top_down_levels"])
    for name, expected in official.items():
        assert scaled_error(expected, ref[name]) < 1e-5, name
