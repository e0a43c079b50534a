"""Run-time inputs: every mistake is a ValueError naming the input; other floats are converted."""

import numpy as np
import pytest

import rlxpy
from rlxpy.models.sam2 import FpnNeckConfig, build_fpn_neck_ir, synthetic_fpn_neck_weights

CFG = FpnNeckConfig.for_hiera("tiny", image_size=(32, 64))


@pytest.fixture(scope="module")
def exe():
    return rlxpy.compile(build_fpn_neck_ir(CFG), synthetic_fpn_neck_weights(CFG, 1))


@pytest.fixture
def inputs(rng):
    return {f"x{i}": rng.standard_normal(CFG.input_shape(i)).astype(np.float32) for i in range(4)}


def test_missing_input(exe, inputs):
    del inputs["x2"]
    with pytest.raises(ValueError, match=r"missing input 'x2': expected a float32 array of shape \[1, 2, 4, 384\]"):
        exe(**inputs)


def test_unknown_input(exe, inputs):
    with pytest.raises(ValueError, match=r"unknown input 'x4'; this graph takes 'x0', 'x1', 'x2', 'x3'"):
        exe(**inputs, x4=inputs["x0"])


def test_wrong_rank(exe, inputs):
    inputs["x1"] = inputs["x1"][0]
    with pytest.raises(ValueError, match=r"input 'x1': wrong rank: expected shape \[1, 4, 8, 192\], got \[4, 8, 192\]"):
        exe(**inputs)


def test_wrong_shape(exe, inputs):
    inputs["x3"] = np.ones((1, 1, 2, 700), np.float32)
    with pytest.raises(ValueError, match=r"input 'x3': wrong shape: expected shape \[1, 1, 2, 768\], got \[1, 1, 2, 700\]"):
        exe(**inputs)


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.bool_, np.complex64])
def test_non_float_dtype(exe, inputs, dtype):
    inputs["x0"] = inputs["x0"].astype(dtype)
    with pytest.raises(ValueError, match=f"input 'x0': dtype {np.dtype(dtype)} is not a float type"):
        exe(**inputs)


def test_errors_are_rlx_input_errors(exe, inputs):
    del inputs["x0"]
    with pytest.raises(rlxpy.InputError):
        exe(**inputs)


def test_other_floats_and_non_contiguous_are_converted(exe, inputs, rng):
    expected = exe(**inputs)
    as_f64 = {k: v.astype(np.float64) for k, v in inputs.items()}
    for name, value in exe(**as_f64).items():
        assert np.array_equal(value, expected[name])
    # non-contiguous: the same values seen through a transposed (channels-first) buffer
    strided = {}
    for k, v in inputs.items():
        buf = np.ascontiguousarray(v.transpose(0, 3, 1, 2))
        strided[k] = buf.transpose(0, 2, 3, 1)
        assert not strided[k].flags.c_contiguous
    for name, value in exe(**strided).items():
        assert np.array_equal(value, expected[name])
    half = {k: v.astype(np.float16) for k, v in inputs.items()}
    out = exe(**half)
    assert out["features_0"].dtype == np.float32
