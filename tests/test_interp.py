"""Each interpreter rule against a plain-loop (or otherwise independent) float64 formulation."""

import itertools
import math

import numpy as np
import pytest

import rlxpy
from rlxpy import GraphBuilder
from rlxpy.interp import RULES, evaluate
from rlxpy.ir import OPS
from reference import linear_matrix, position_encoding
from conftest import legacy


def run_one(build, **inputs):
    b = GraphBuilder()
    args = [b.input(k, v.shape) for k, v in inputs.items()]
    b.output("y", build(b, *args))
    return evaluate(b.build(), inputs)["y"]


def test_every_op_has_a_rule():
    assert set(RULES) == set(OPS) - {"input", "param", "const"}


def test_matmul_broadcasts_like_numpy(rng):
    a = rng.standard_normal((3, 1, 4, 5), dtype=np.float32)
    w = rng.standard_normal((2, 5, 6), dtype=np.float32)
    y = run_one(lambda b, a, w: b.matmul(a, w), a=a, w=w)
    expect = np.zeros((3, 2, 4, 6))
    for i, j, m, n in itertools.product(range(3), range(2), range(4), range(6)):
        expect[i, j, m, n] = sum(float(a[i, 0, m, k]) * float(w[j, k, n]) for k in range(5))
    np.testing.assert_allclose(y, expect, rtol=1e-5, atol=1e-5)


def test_bias_add_on_any_axis(rng):
    x = rng.standard_normal((2, 3, 4), dtype=np.float32)
    bias = rng.standard_normal(3, dtype=np.float32)
    y = run_one(lambda b, x, c: b.bias_add(x, c, axis=1), x=x, c=bias)
    for i, j, k in itertools.product(range(2), range(3), range(4)):
        assert y[i, j, k] == np.float32(x[i, j, k] + bias[j])


def test_upsample_add_nearest(rng):
    x = rng.standard_normal((2, 3, 6, 4), dtype=np.float32)
    c = rng.standard_normal((2, 3, 3, 2), dtype=np.float32)
    y = run_one(lambda b, x, c: b.upsample_add(x, c), x=x, c=c)
    for idx in itertools.product(range(2), range(3), range(6), range(4)):
        n, ch, i, j = idx
        assert y[idx] == np.float32(x[idx] + c[n, ch, i // 2, j // 2])


@pytest.mark.parametrize("h, w", [(1, 1), (1, 3), (4, 2), (5, 7)])
def test_upsample_add_bilinear_matches_pytorch_formula(rng, h, w):
    x = rng.standard_normal((2, 3, 2 * h, 2 * w), dtype=np.float32)
    c = rng.standard_normal((2, 3, h, w), dtype=np.float32)
    y = run_one(lambda b, x, c: b.upsample_add(x, c, mode="bilinear"), x=x, c=c)
    expect = x + np.einsum("ih,bchw,jw->bcij", linear_matrix(h), c.astype(np.float64), linear_matrix(w))
    np.testing.assert_allclose(y, expect, rtol=1e-6, atol=1e-6)


def test_scale_transpose_reshape(rng):
    x = rng.standard_normal((2, 3, 4), dtype=np.float32)
    y = run_one(lambda b, x: b.scale(x, factor=0.5), x=x)
    assert np.array_equal(y, x * np.float32(0.5))
    y = run_one(lambda b, x: b.transpose(x, perm=(2, 0, 1)), x=x)
    for i, j, k in itertools.product(range(2), range(3), range(4)):
        assert y[k, i, j] == x[i, j, k]
    y = run_one(lambda b, x: b.reshape(x, shape=(4, 6)), x=x)
    assert list(y.ravel()) == list(x.ravel())


@pytest.mark.parametrize("h, w", [(1, 1), (3, 5), (16, 16)])
def test_pos_encoding_matches_the_official_layout(h, w):
    b = GraphBuilder()
    b.output("p", b.pos_encoding(batch=2, dim=256, height=h, width=w))
    y = evaluate(b.build(), {})["p"]
    np.testing.assert_allclose(y, position_encoding(2, 256, h, w), atol=1e-6)
    # spot-check the definition directly: channel 2j = sin, 2j+1 = cos; y first, then x
    r, col = h - 1, 0
    for ch in (0, 1, 6, 127, 128, 129, 200):
        k = ch % 128
        pos = (r + 1) / (h + 1e-6) if ch < 128 else (col + 1) / (w + 1e-6)
        angle = pos * 2 * math.pi / 10000 ** (2 * (k // 2) / 128)
        want = math.sin(angle) if k % 2 == 0 else math.cos(angle)
        assert y[1, ch, r, col] == pytest.approx(want, abs=1e-6)


def test_fused_matmul_is_the_composition(rng):
    x = rng.standard_normal((1, 4, 6, 8), dtype=np.float32)
    w = rng.standard_normal((8, 16), dtype=np.float32)
    bias = rng.standard_normal(16, dtype=np.float32)
    c = rng.standard_normal((1, 16, 2, 3), dtype=np.float32)

    def unfused(b, x, w, bias, c):
        y = b.transpose(b.bias_add(b.matmul(x, w), bias), perm=(0, 3, 1, 2))
        return b.scale(b.upsample_add(y, c, mode="bilinear"), factor=0.5)

    def fused(b, x, w, bias, c):
        return b.fused_matmul(x, w, bias, c, **legacy(bias=True, perm=(0, 3, 1, 2), upsample="bilinear", factor=0.5))

    args = dict(x=x, w=w, bias=bias, c=c)
    assert np.array_equal(run_one(fused, **args), run_one(unfused, **args))


def test_interp_executable_outputs_are_fresh_arrays(rng):
    b = GraphBuilder()
    x = b.input("x", (2, 3))
    b.output("same", b.reshape(x, shape=(2, 3)))
    exe = rlxpy.compile(b.build())
    data = rng.standard_normal((2, 3), dtype=np.float32)
    out = exe(x=data)["same"]
    assert np.array_equal(out, data) and not np.shares_memory(out, data)
