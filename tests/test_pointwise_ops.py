"""A pointwise op is its declaration, its numpy rule and its emitter: relu was added with nothing
else, and it fuses into every matmul rule's epilogue, runs in the pointwise loop, and the random
graphs cover it."""

import numpy as np
import pytest

import rlxpy
from rlxpy import GraphBuilder
from rlxpy.difftest import check_case, seeded_case


def relu64(x):
    return np.maximum(x, 0.0)


def reference(x, w, bias, perm):
    y = x.astype(np.float64) @ w.astype(np.float64) + bias
    y = relu64(y)
    return np.transpose(y, perm) if perm else y


CASES = {
    # rule: (input shape, weight constant?, perm); the shapes exercise vector and scalar epilogues
    "nchw_microkernel": [((2, 4, 16, 24), True, (0, 3, 1, 2)), ((1, 3, 5, 24), True, (0, 3, 1, 2))],
    "channels_last_microkernel": [((2, 7, 24), True, ()), ((5, 24), True, ())],
    "gemm": [((2, 7, 24), False, ()), ((2, 3, 5, 24), False, (0, 3, 1, 2))],
}


@pytest.mark.parametrize("rule, shape, const_w, perm",
                         [(r, *c) for r, cases in CASES.items() for c in cases])
@pytest.mark.parametrize("relu_first", [False, True])
def test_matmul_bias_relu_is_one_native_kernel_on_every_rule(rng, rule, shape, const_w, perm, relu_first):
    n = 37
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((shape[-1], n)).astype(np.float32) / 5
    bias = rng.standard_normal(n).astype(np.float32)
    b = GraphBuilder("relu_chain")
    xv = b.input("x", shape)
    wv = b.const(w) if const_w else b.input("w", w.shape)
    y = b.bias_add(b.matmul(xv, wv), b.const(bias))
    if relu_first or not perm:                     # relu before the transpose: rewritten after it
        y = b.relu(y)
    if perm:
        y = b.transpose(y, perm=perm)
        if not relu_first:
            y = b.relu(y)
    b.output("y", y)
    exe = rlxpy.compile(b.build(), target="llvm", strict=True, cache=False, compare_with="interp")
    kernels = [s for s in exe.steps if s.kind == "native"]
    assert len(kernels) == 1 and kernels[0].node.op == "fused_matmul", exe.report()
    assert kernels[0].rule == rule, exe.report()
    assert [st.op for st in kernels[0].node.attrs["epilogue"]] == ["bias_add", "relu"]
    inputs = {"x": x} if const_w else {"x": x, "w": w}
    got = exe(**inputs)["y"]
    want = reference(x, w, bias, perm)
    assert (got == 0).any() and (got > 0).any()                      # relu did something
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def test_relu_alone_runs_in_the_pointwise_loop(rng):
    x = rng.standard_normal((3, 5, 7)).astype(np.float32)
    x[0, 0, 0] = np.nan
    b = GraphBuilder("r")
    b.output("y", b.relu(b.input("x", x.shape)))
    exe = rlxpy.compile(b.build(), target="llvm", strict=True, cache=False)
    assert [s.rule for s in exe.steps] == ["pointwise_loop"]
    got = exe(x=x)["y"]
    assert np.isnan(got[0, 0, 0]) and np.array_equal(got[1:], np.maximum(x[1:], 0))


def test_the_random_graphs_fuse_relu_and_agree():
    fused = 0
    for seed in range(300):
        case = seeded_case(seed)
        exe = rlxpy.compile(case.graph, case.params)
        fused += any(n.op == "fused_matmul" and any(st.op == "relu" for st in n.attrs["epilogue"])
                     for n in exe.graph.nodes)
        if fused and seed >= 20:
            break
    assert fused, "no random graph fused a relu"
    result = check_case(case.graph, case.inputs, params=case.params, target="llvm")
    assert result.ok, str(result.first)
