"""Every LLVM kernel alone against its interpreter rule, on random shapes (odd and size-1 included).

Each graph is compiled with compare_with="interp", so the per-node check runs too, and the result
is compared again here with the interpreter's. Elementwise and layout kernels do the interpreter's
float32 operations in the same order, so they must match bit for bit; reductions (matmul) and the
sine encoding (libm in double precision) must match within 1e-5 of the output's scale.
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import legacy, scaled_error
from rlxpy import GraphBuilder
from rlxpy.codegen import compile_llvm
from rlxpy.codegen.rules.layout import coalesce
from rlxpy.interp import evaluate
from rlxpy.ir import OPS

TOL = 1e-5
FEW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run_both(build, inputs):
    """(native, interpreter) results of a one-op graph whose inputs are `inputs`."""
    b = GraphBuilder("k")
    values = [b.input(name, a.shape) for name, a in inputs.items()]
    b.output("y", build(b, *values))
    graph = b.build()
    exe = compile_llvm(graph, cache=False, compare_with="interp", threads=1, strict=True)
    assert set(exe.placement.values()) <= {"native", "alias"}
    return exe(**inputs)["y"], evaluate(graph, inputs)["y"], exe


def randn(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def seeded(seed):
    return np.random.default_rng(seed)


dims = st.integers(1, 7)
shapes = st.lists(dims, min_size=1, max_size=4).map(tuple)


def test_every_compute_op_has_a_lowering():
    from rlxpy.codegen import RULES
    assert all(RULES.for_op(n) for n, d in OPS.items() if not d.is_source)


@FEW
@given(shape=shapes, factor=st.floats(-4, 4, allow_nan=False), seed=st.integers(0, 2**32 - 1))
def test_scale(shape, factor, seed):
    x = randn(seeded(seed), shape)
    got, ref, _ = run_both(lambda b, x: b.scale(x, factor=factor), {"x": x})
    assert np.array_equal(got, ref)


@FEW
@given(shape=shapes, data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_bias_add_any_axis(shape, data, seed):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    rng = seeded(seed)
    x, bias = randn(rng, shape), randn(rng, (shape[axis],))
    got, ref, _ = run_both(lambda b, x, c: b.bias_add(x, c, axis=axis), {"x": x, "c": bias})
    assert np.array_equal(got, ref)


@FEW
@given(shape=st.lists(st.integers(1, 5), min_size=0, max_size=5).map(tuple), data=st.data(),
       seed=st.integers(0, 2**32 - 1))
def test_transpose_any_perm(shape, data, seed):
    perm = tuple(data.draw(st.permutations(range(len(shape)))))
    x = randn(seeded(seed), shape)
    got, ref, _ = run_both(lambda b, x: b.transpose(x, perm=perm), {"x": x})
    assert np.array_equal(got, ref)


def test_transpose_of_the_neck_layout(rng):
    x = randn(rng, (2, 5, 7, 3))
    got, ref, _ = run_both(lambda b, x: b.transpose(x, perm=(0, 3, 1, 2)), {"x": x})
    assert np.array_equal(got, ref)


@pytest.mark.parametrize("shape, perm, expect", [
    ((2, 8, 12, 16), (0, 3, 1, 2), ((2, 96, 16), (0, 2, 1))),
    ((4, 5), (0, 1), ((20,), (0,))),
    ((1, 3, 1, 4), (3, 1, 0, 2), ((3, 4), (1, 0))),
    ((1, 1), (1, 0), ((1,), (0,))),
    ((2, 3, 4, 5), (2, 3, 0, 1), ((6, 20), (1, 0))),
])
def test_coalesce(shape, perm, expect):
    assert coalesce(shape, perm) == expect


@FEW
@given(shape=shapes, seed=st.integers(0, 2**32 - 1), data=st.data())
def test_reshape_is_a_view_with_the_same_elements(shape, seed, data):
    n = math.prod(shape)
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    first = data.draw(st.sampled_from(divisors))
    new_shape = (first, n // first)
    x = randn(seeded(seed), shape)
    # reshape feeding a kernel: the kernel must read the operand's buffer through the alias
    got, ref, exe = run_both(lambda b, x: b.scale(b.reshape(x, shape=new_shape), factor=2.0), {"x": x})
    assert np.array_equal(got, ref)
    assert sorted(exe.placement.values()) == ["alias", "native"]


@FEW
@given(lead=st.lists(st.integers(1, 3), max_size=2).map(tuple), h=st.integers(1, 6), w=st.integers(1, 6),
       mode=st.sampled_from(["nearest", "bilinear"]), seed=st.integers(0, 2**32 - 1))
def test_upsample_add(lead, h, w, mode, seed):
    rng = seeded(seed)
    x, c = randn(rng, lead + (2 * h, 2 * w)), randn(rng, lead + (h, w))
    got, ref, _ = run_both(lambda b, x, c: b.upsample_add(x, c, mode=mode), {"x": x, "c": c})
    assert np.array_equal(got, ref)          # same float32 operations in the same order


@pytest.mark.parametrize("h, w", [(1, 1), (1, 5), (3, 1), (2, 2)])
def test_bilinear_borders(h, w, rng):
    x, c = randn(rng, (2, 3, 2 * h, 2 * w)), randn(rng, (2, 3, h, w))
    got, ref, _ = run_both(lambda b, x, c: b.upsample_add(x, c, mode="bilinear"), {"x": x, "c": c})
    assert np.array_equal(got, ref)


@st.composite
def matmul_shapes(draw, max_lead=2):
    """a, b shapes whose leading axes broadcast as in numpy (missing, 1, or equal)."""
    lead = tuple(draw(st.lists(st.integers(1, 3), max_size=max_lead)))
    m, k = draw(st.integers(1, 21)), draw(st.integers(1, 40))
    n = draw(st.sampled_from([1, 3, 8, 17, 64, 256, 300, 513]))

    def batch():
        cut = draw(st.integers(0, len(lead)))
        return tuple(d if draw(st.booleans()) else 1 for d in lead[cut:])
    return batch() + (m, k), batch() + (k, n)


@FEW
@given(shapes=matmul_shapes(), seed=st.integers(0, 2**32 - 1))
def test_matmul_broadcasting(shapes, seed):
    rng = seeded(seed)
    a, bm = randn(rng, shapes[0]), randn(rng, shapes[1])
    got, ref, _ = run_both(lambda b, a, w: b.matmul(a, w), {"a": a, "w": bm})
    assert got.shape == np.matmul(a, bm).shape
    assert scaled_error(got, ref) < TOL


def test_matmul_against_float64(rng):
    """Not only the interpreter: a float64 product of the same data, K long enough to matter."""
    a, w = randn(rng, (3, 29, 1100)), randn(rng, (1100, 40))
    got, _, _ = run_both(lambda b, a, w: b.matmul(a, w), {"a": a, "w": w})
    assert scaled_error(got, a.astype(np.float64) @ w.astype(np.float64)) < TOL


@st.composite
def fused_cases(draw):
    """A fused_matmul: random batch axes, bias, perm and upsample (its last two output axes even)."""
    lead = list(draw(st.lists(st.integers(1, 3), max_size=2)))
    m, k, n = draw(st.integers(1, 11)), draw(st.integers(1, 24)), draw(st.sampled_from([2, 5, 8, 16, 260]))
    y_shape = lead + [m, n]
    rank = len(y_shape)
    perm = tuple(draw(st.permutations(range(rank)))) if draw(st.booleans()) else ()
    upsample = draw(st.sampled_from(["none", "nearest", "bilinear"]))
    order = perm or tuple(range(rank))
    if upsample != "none":
        for axis in order[-2:]:               # the output's last two axes must be even
            y_shape[axis] = 2 * max(1, y_shape[axis] // 2)
    lead, m, n = y_shape[:-2], y_shape[-2], y_shape[-1]
    b_is_2d = draw(st.booleans())
    a_lead, b_lead = [], []
    for d in lead:                            # which operand carries each batch axis (the other broadcasts)
        who = "a" if b_is_2d else draw(st.sampled_from(["a", "b", "both"]))
        a_lead.append(d if who in ("a", "both") else 1)
        b_lead.append(d if who in ("b", "both") else 1)
    return dict(a=tuple(a_lead) + (m, k), b=(k, n) if b_is_2d else tuple(b_lead) + (k, n),
                bias=draw(st.booleans()), perm=perm, upsample=upsample,
                factor=draw(st.sampled_from([1.0, 0.5, -1.75])), y_shape=tuple(y_shape), order=order)


@FEW
@given(case=fused_cases(), seed=st.integers(0, 2**32 - 1))
def test_fused_matmul_every_epilogue(case, seed):
    rng = seeded(seed)
    out_shape = tuple(case["y_shape"][p] for p in case["order"])
    inputs = {"a": randn(rng, case["a"]), "w": randn(rng, case["b"])}
    if case["bias"]:
        inputs["bias"] = randn(rng, (case["y_shape"][-1],))
    if case["upsample"] != "none":
        inputs["coarse"] = randn(rng, out_shape[:-2] + (out_shape[-2] // 2, out_shape[-1] // 2))

    def build(b, *values):
        return b.fused_matmul(*values, **legacy(bias=case["bias"], perm=case["perm"], upsample=case["upsample"],
                                                 factor=case["factor"]))
    got, ref, _ = run_both(build, inputs)
    assert scaled_error(got, ref) < TOL


@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
def test_fused_matmul_neck_level(rng, upsample):
    """The neck's shape of it: BHWC input, [cin, 256] weight, bias, NCHW out, top-down add, avg."""
    inputs = {"x": randn(rng, (2, 6, 10, 96)), "w": randn(rng, (96, 256)) / 10,
              "bias": randn(rng, (256,)), "coarse": randn(rng, (2, 256, 3, 5))}
    got, ref, _ = run_both(lambda b, *v: b.fused_matmul(*v, **legacy(bias=True, perm=(0, 3, 1, 2), upsample=upsample,
                                                                 factor=0.5)), inputs)
    assert scaled_error(got, ref) < TOL


@FEW
@given(batch=st.integers(1, 2), dim=st.sampled_from([4, 8, 36, 256]), h=st.integers(1, 9), w=st.integers(1, 9),
       temperature=st.floats(10, 20000))
def test_pos_encoding(batch, dim, h, w, temperature):
    b = GraphBuilder("pos")
    b.output("p", b.pos_encoding(batch=batch, dim=dim, height=h, width=w, temperature=temperature))
    graph = b.build()
    exe = compile_llvm(graph, cache=False, compare_with="interp", strict=True)
    assert exe.placement == {graph.outputs["p"]: "native"}
    got, ref = exe()["p"], evaluate(graph, {})["p"]
    assert scaled_error(got, ref) < TOL
    assert np.abs(got - ref).max() <= 2 * np.spacing(np.float32(1))   # both round libm's double once


@pytest.mark.parametrize("shape, perm", [
    ((3, 4, 5), (1, 0, 2)),          # rows stay contiguous
    ((2, 37, 19), (0, 2, 1)),        # blocked, with partial strips
    ((5, 3, 2, 17), (3, 0, 2, 1)),
    ((1, 64, 64, 48), (0, 3, 1, 2)),
])
def test_transpose_paths(shape, perm, rng):
    x = randn(rng, shape)
    got, ref, _ = run_both(lambda b, x: b.transpose(x, perm=perm), {"x": x})
    assert np.array_equal(got, ref)
