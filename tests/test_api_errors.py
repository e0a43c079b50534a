"""Hardening of the Python API: compile's options and params give an RlxError naming the culprit."""

import numpy as np
import pytest

import rlxpy
from rlxpy import GraphBuilder, OptionError, RlxError, WeightsError


def graph():
    b = GraphBuilder("g")
    x = b.input("x", (2, 3))
    w = b.param("w", (3, 4))
    b.output("y", b.matmul(x, w))
    return b.build()


@pytest.fixture
def weights(rng):
    return {"w": rng.standard_normal((3, 4)).astype(np.float32)}


def test_unknown_llvm_option_lists_the_valid_ones(weights):
    with pytest.raises(OptionError) as e:
        rlxpy.compile(graph(), weights, target="llvm", bogus=1)
    assert str(e.value) == ("option 'bogus' does not apply to target 'llvm'; its options: strict, cache, "
                            "compare_with, threads")
    assert isinstance(e.value, RlxError)


def test_interp_takes_no_options(weights):
    with pytest.raises(OptionError, match=r"option 'threads' does not apply to target 'interp'; it takes no options"):
        rlxpy.compile(graph(), weights, target="interp", threads=2)


def test_valid_llvm_options_still_work(weights, rng):
    exe = rlxpy.compile(graph(), weights, target="llvm", strict=True, cache=False, threads=1)
    x = rng.standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_allclose(exe(x=x)["y"], x.astype(np.float64) @ weights["w"], rtol=1e-5)


@pytest.mark.parametrize("params", [[1, 2], np.ones((3, 4), np.float32), "w"])
def test_params_must_be_a_mapping(params):
    with pytest.raises(WeightsError, match=f"params must be a mapping of param name -> array, got {type(params).__name__}"):
        rlxpy.compile(graph(), params)


def test_ragged_param_names_the_key():
    with pytest.raises(WeightsError, match=r"param 'w': cannot be read as an array \(.*inhomogeneous"):
        rlxpy.compile(graph(), {"w": [[1.0, 2.0, 3.0, 4.0], [1.0, 2.0], [3.0]]})


def test_float64_beyond_float32_says_overflow(rng):
    w = rng.standard_normal((3, 4))
    w[0, 1], w[2, 3] = 1e39, -2.5e300
    with pytest.raises(WeightsError) as e:
        rlxpy.compile(graph(), {"w": w})
    assert str(e.value) == ("param 'w': 2 value(s) overflow float32 (largest magnitude 2.5e+300; "
                            "float32 holds up to 3.40282e+38)")
    w[1, 1] = np.nan
    with pytest.raises(WeightsError, match=r"2 value\(s\) overflow float32 .*; also 1 value\(s\) are NaN or Inf"):
        rlxpy.compile(graph(), {"w": w})
    w = rng.standard_normal((3, 4))
    w[1, 2] = np.inf
    with pytest.raises(WeightsError, match=r"^param 'w': 1 value\(s\) are NaN or Inf$"):
        rlxpy.compile(graph(), {"w": w})
    w[1, 2] = 3.4028234e38                                # float32's largest: still fine
    rlxpy.compile(graph(), {"w": w})
