"""Kernels of one module share code: nodes the NCHW micro-kernel rule lowers alike except for their
shapes (K, H, W, batch) call one body that takes the shapes as arguments, so the module (and its
compile time) does not grow with every level of the neck. Each node must still compute its own
result: checked against a float64 reference on random data, for every vector width this host runs."""

import numpy as np
import pytest

import rlxpy
from rlxpy import GraphBuilder
from rlxpy.codegen.isa import host_isa
from rlxpy.models.sam2 import FpnNeckConfig, build_fpn_neck_ir, synthetic_fpn_neck_weights
from conftest import legacy

LANES = [n for n in (4, 8, 16) if n <= host_isa().lanes]
N = 32


@pytest.fixture(params=LANES, ids=[f"{n}lanes" for n in LANES])
def lanes(request, monkeypatch):
    monkeypatch.setenv("RLXPY_VECTOR_LANES", str(request.param))
    return request.param


def build(levels, rng):
    """One fused_matmul per (batch, h, w, k, upsample); returns graph, inputs, float64 references."""
    b = GraphBuilder("shared")
    inputs, refs = {}, {}
    for i, (batch, h, w, k, upsample) in enumerate(levels):
        x = rng.uniform(-2, 2, (batch, h, w, k)).astype(np.float32)
        wt = rng.standard_normal((k, N)).astype(np.float32)
        bias = rng.standard_normal(N).astype(np.float32)
        operands = [b.input(f"x{i}", x.shape), b.const(wt), b.const(bias)]
        inputs[f"x{i}"] = x
        ref = np.einsum("bhwk,kn->bnhw", x.astype(np.float64), wt.astype(np.float64)) + bias[None, :, None, None]
        if upsample == "nearest":
            coarse = rng.standard_normal((batch, N, h // 2, w // 2)).astype(np.float32)
            operands.append(b.input(f"c{i}", coarse.shape))
            inputs[f"c{i}"] = coarse
            ref = ref + coarse.repeat(2, axis=2).repeat(2, axis=3)
        b.output(f"y{i}", b.fused_matmul(*operands, **legacy(bias=True, perm=(0, 3, 1, 2), upsample=upsample)))
        refs[f"y{i}"] = ref
    return b.build(), inputs, refs


def check(exe, inputs, refs):
    out = exe(**inputs)
    for name, ref in refs.items():
        assert np.abs(out[name] - ref).max() <= 1e-5 * np.abs(ref).max(), name


def bodies(exe) -> int:
    return exe.llvm_ir.count("define internal")


def test_levels_that_differ_in_shapes_share_one_body(lanes, rng):
    # K multiples of 16 and H*W multiples of 64: the same variant at 4, 8 and 16 lanes
    levels = [(1, 8, 8, 32, "none"), (2, 16, 8, 48, "none"), (1, 4, 16, 80, "none")]
    graph, inputs, refs = build(levels, rng)
    exe = rlxpy.codegen.compile_llvm(graph, cache=False, strict=True)
    assert {s.rule for s in exe.steps} == {"nchw_microkernel"}
    assert bodies(exe) == 1
    check(exe, inputs, refs)


def test_odd_shapes_share_a_body_with_every_remainder(lanes, rng):
    # K % 4 != 0 and K % lanes != 0; partial tiles (H*W not a multiple of the tile); batch 2
    levels = [(2, 5, 7, 18, "none"), (1, 3, 9, 35, "none")]
    graph, inputs, refs = build(levels, rng)
    exe = rlxpy.codegen.compile_llvm(graph, cache=False, strict=True)
    assert bodies(exe) == 1
    check(exe, inputs, refs)


def test_an_upsampling_level_gets_a_body_of_its_own(lanes, rng):
    levels = [(1, 8, 8, 32, "none"), (1, 16, 16, 32, "nearest"), (1, 16, 8, 48, "none")]
    graph, inputs, refs = build(levels, rng)
    exe = rlxpy.codegen.compile_llvm(graph, cache=False, strict=True)
    assert bodies(exe) == 2
    check(exe, inputs, refs)


def test_the_neck_has_one_body_per_epilogue():
    """base_plus at 1024 (only compiled, not run): levels 3, 1 and 0 share a body, level 2 (which
    adds the upsampled level 3) has its own."""
    cfg = FpnNeckConfig.for_hiera("base_plus", image_size=1024)
    exe = rlxpy.compile(build_fpn_neck_ir(cfg), synthetic_fpn_neck_weights(cfg), target="llvm", cache=False)
    assert sum(kind == "native" for kind in exe.placement.values()) == 4
    assert bodies(exe) == 2
