"""The register-blocked micro-kernel rules: fused_matmul to NCHW (`nchw_microkernel`), and matmul or
fused_matmul with a channels-last result (`channels_last_microkernel`).

Every result is compared with the interpreter and with an independent float64 reference (einsum,
index-array nearest, interpolation-matrix bilinear from tests/reference.py), element by element,
within the rounding a float32 evaluation may make: (K + 8) units of 2^-24 of the element's
magnitude (the same expression on absolute values; random data may cancel to results far smaller
than their terms, which a tolerance relative to the output's largest value would flag wrongly).
The fixed neck-shaped cases also run with compare_with="interp". Shapes are random: odd K, W = 1,
W and H*W not multiples of the tile, batch > 1, every epilogue; the vector width is forced down
(RLXPY_VECTOR_LANES) so the 8-lane (AVX2) and 4-lane shapes run here too.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rlxpy
from conftest import legacy, scaled_error
from reference import bilinear2x, nearest2x
from rlxpy import GraphBuilder
from rlxpy.codegen import compile_llvm
from rlxpy.codegen.isa import host_isa
from rlxpy.codegen.emit.register_tile import TileShape, choose_tile, pack_panels
from rlxpy.codegen.runtime import ALIGNMENT
from rlxpy.errors import RlxError
from rlxpy.interp import evaluate
from rlxpy.models.sam2 import FpnNeckConfig, build_fpn_neck_ir, synthetic_fpn_neck_inputs, synthetic_fpn_neck_weights

TOL = 1e-5
RULE = "nchw_microkernel"
CL_RULE = "channels_last_microkernel"
LANES = [n for n in (4, 8, 16) if n <= host_isa().lanes]
SOME = settings(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("RLXPY_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "kernels-cache"))


def fused_graph(batch, h, w, k, n, *, bias, upsample, factor, seed):
    """One fused_matmul with constant weights (and bias); returns graph, inputs, and float64 data."""
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((k, n)).astype(np.float32)
    bias_v = rng.standard_normal(n).astype(np.float32)
    inputs = {"x": rng.uniform(-2, 2, (batch, h, w, k)).astype(np.float32)}
    b = GraphBuilder("fused")
    operands = [b.input("x", (batch, h, w, k)), b.const(weights)]
    if bias:
        operands.append(b.const(bias_v))
    if upsample != "none":
        inputs["coarse"] = rng.standard_normal((batch, n, h // 2, w // 2)).astype(np.float32)
        operands.append(b.input("coarse", (batch, n, h // 2, w // 2)))
    b.output("y", b.fused_matmul(*operands, **legacy(bias=bias, perm=(0, 3, 1, 2), upsample=upsample, factor=factor)))
    def neck(f):                      # the expression in float64, with f applied to every datum
        y = np.einsum("bhwk,kn->bnhw", f(inputs["x"]), f(weights))
        if bias:
            y += f(bias_v)[None, :, None, None]
        if upsample != "none":
            y += (nearest2x if upsample == "nearest" else bilinear2x)(f(inputs["coarse"]))
        return y * factor
    return b.build(), inputs, Expected(neck(lambda a: a.astype(np.float64)), neck(lambda a: np.abs(a.astype(np.float64))), k)


class Expected:
    """A float64 result, its magnitude (the expression on absolute values) and contraction length."""

    def __init__(self, value, magnitude, k):
        self.value, self.bound = value, (k + 8) * 2.0**-24 * np.abs(magnitude)

    def check(self, got, interp):
        assert got.shape == self.value.shape
        assert np.all(np.abs(got - self.value) <= self.bound), np.abs(got - self.value).max()
        assert np.all(np.abs(got - interp) <= 2 * self.bound), np.abs(got - interp).max()


def check(graph, inputs, expected, threads=1, compare=False):
    exe = compile_llvm(graph, compare_with="interp" if compare else None, strict=True, threads=threads)
    step, = exe.steps
    assert step.rule == RULE, exe.report()
    got = exe(**inputs)["y"]
    expected.check(got, evaluate(graph, inputs)["y"])
    return exe, got


@st.composite
def problems(draw):
    upsample = draw(st.sampled_from(["none", "nearest", "bilinear"]))
    even = upsample != "none"
    h = draw(st.integers(1, 6)) * (2 if even else 1)
    w = draw(st.sampled_from([1, 2, 3, 5, 6, 8, 14, 16, 18, 32, 34]))
    if even and w % 2:
        w += 1
    return dict(batch=draw(st.integers(1, 3)), h=h, w=w, k=draw(st.sampled_from([1, 3, 16, 17, 31, 40, 112])),
                n=draw(st.sampled_from([1, 5, 6, 7, 12, 13, 24, 40])), bias=draw(st.booleans()), upsample=upsample,
                factor=draw(st.sampled_from([1.0, 0.5, -1.25])), seed=draw(st.integers(0, 2**31)))


@SOME
@given(p=problems(), lanes=st.sampled_from(LANES))
def test_random_shapes_every_epilogue(p, lanes, monkeypatch_lanes):
    monkeypatch_lanes(lanes)
    check(*fused_graph(**p))


@pytest.fixture
def monkeypatch_lanes():
    """Set RLXPY_VECTOR_LANES for the rest of a (hypothesis) test, restoring it afterwards."""
    mp = pytest.MonkeyPatch()
    yield lambda lanes: mp.setenv("RLXPY_VECTOR_LANES", str(lanes))
    mp.undo()


@pytest.mark.parametrize("lanes", LANES)
@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
def test_neck_level_shapes(lanes, upsample, monkeypatch):
    """Image rows that are whole vectors (the vector epilogue), a K that is not a multiple of the
    lanes, 256 channels (a remainder tile of 256 % 6), batch 2, the avg factor."""
    monkeypatch.setenv("RLXPY_VECTOR_LANES", str(lanes))
    check(*fused_graph(2, 6, 32, 35, 256, bias=True, upsample=upsample, factor=0.5, seed=lanes), compare=True)


@pytest.mark.parametrize("h, w", [(1, 1), (2, 2), (1, 9), (7, 1), (4, 34), (2, 48)])
def test_edges(h, w):
    """W = 1, a single pixel, tiles straddling image rows and the image end."""
    upsample = "bilinear" if h % 2 == 0 and w % 2 == 0 else "none"
    check(*fused_graph(3, h, w, 9, 13, bias=True, upsample=upsample, factor=2.0, seed=h * 100 + w))


def test_large_output_streaming_stores_aligned_and_not(rng):
    """An output above the streaming threshold: fresh outputs are cache-line aligned (streaming
    stores); an out= array that is not aligned takes the ordinary stores. Same bits either way."""
    graph, inputs, expected = fused_graph(1, 32, 64, 24, 256, bias=True, upsample="nearest", factor=1.0, seed=5)
    exe, got = check(graph, inputs, expected, threads=2, compare=True)
    assert got.ctypes.data % ALIGNMENT == 0
    raw = np.empty(got.size + 16, np.float32)
    skew = (-raw.ctypes.data % ALIGNMENT) // 4 + 1                  # 4 bytes past a cache line
    out = raw[skew:skew + got.size].reshape(got.shape)
    assert out.ctypes.data % ALIGNMENT == 4
    assert np.array_equal(exe.run(inputs, out={"y": out})["y"], got)


def test_weight_packing_layout(rng):
    w = rng.standard_normal((5, 14)).astype(np.float32)
    packed = pack_panels(w, 6, "short")
    assert packed.shape == (5 * 14,)
    panels = packed[:2 * 5 * 6].reshape(2, 5, 6)
    assert np.array_equal(panels[1, 3], w[3, 6:12])
    assert np.array_equal(packed[2 * 5 * 6:].reshape(5, 2), w[:, 12:])
    overlap = pack_panels(w, 6, "overlap")                   # the last panel: the last 6 columns
    assert overlap.shape == (3 * 5 * 6,) and np.array_equal(overlap[2 * 5 * 6:].reshape(5, 6), w[:, 8:])
    pad = pack_panels(w, 6, "pad")                           # the last panel: 2 columns, then zeros
    last = pad[2 * 5 * 6:].reshape(5, 6)
    assert np.array_equal(last[:, :2], w[:, 12:]) and not last[:, 2:].any()


def test_tile_shape_fits_the_register_file():
    for lanes, regs in ((16, 32), (8, 16), (4, 16)):
        from rlxpy.codegen.isa import VectorISA
        t = choose_tile(VectorISA(lanes, regs, True, "x"), 256)
        assert isinstance(t, TileShape) and t.lanes == lanes
        assert t.rows * t.vecs + t.vecs + 1 <= regs


def test_vector_lanes_override_is_checked(monkeypatch):
    monkeypatch.setenv("RLXPY_VECTOR_LANES", "12")
    with pytest.raises(RlxError, match="RLXPY_VECTOR_LANES='12': expected 4, 8 or 16"):
        host_isa()


# -- what the rule declines, and the report saying so ------------------------------------------------


def declined_by(build, ran="gemm"):
    """{rule: why} of the rules that declined the one node `build` makes; `ran` took it."""
    b = GraphBuilder("g")
    b.output("y", build(b))
    exe = compile_llvm(b.build(), cache=False)
    step, = exe.steps
    assert step.rule == ran and step.kind == "native"
    for why in step.declined:
        assert f"declined by {why}" in exe.report()
    return dict(d.split(": ", 1) for d in step.declined)


def test_declines_weights_that_are_not_constant():
    why = declined_by(lambda b: b.fused_matmul(b.input("x", (1, 2, 2, 3)), b.input("w", (3, 4)), perm=(0, 3, 1, 2)))
    assert "b is not a compile-time constant" in why[RULE]
    why = declined_by(lambda b: b.fused_matmul(b.input("x", (1, 2, 2, 3)), b.input("w", (3, 4))))
    assert "b is not a compile-time constant" in why[CL_RULE]


def test_declines_other_layouts(rng):
    w = rng.standard_normal((3, 4)).astype(np.float32)
    why = declined_by(lambda b: b.fused_matmul(b.input("x", (1, 2, 2, 3)), b.const(w)), ran=CL_RULE)
    assert why == {RULE: "perm none: this rule writes channels-last input to NCHW, perm [0, 3, 1, 2]"}
    batched = rng.standard_normal((2, 1, 3, 4)).astype(np.float32)
    why = declined_by(lambda b: b.fused_matmul(b.input("x", (5, 2, 3)), b.const(batched), perm=(0, 3, 1, 2)))
    assert "expected [batch, height, width, K]" in why[RULE]          # a broadcast against batched b
    assert why[CL_RULE] == "perm [0, 3, 1, 2]: this rule writes the result channels-last (no perm)"
    why = declined_by(lambda b: b.fused_matmul(b.input("x", (1, 4, 3)), b.const(w), b.input("c", (1, 2, 2)),
                                               **legacy(upsample="nearest")))
    assert why[CL_RULE] == ("epilogue step upsample_add reads 'upsample2x' operands; this rule's epilogue "
                            "reads operands along the channels only")


def test_declines_a_k_too_large_for_the_stack_panel(rng):
    w = rng.standard_normal((5000, 2)).astype(np.float32)
    why = declined_by(lambda b: b.fused_matmul(b.input("x", (1, 1, 2, 5000)), b.const(w), perm=(0, 3, 1, 2)))
    assert "K = 5000" in why[RULE] and "KiB" in why[RULE]


# -- the channels-last rule (no perm) --------------------------------------------------------------------


@st.composite
def row_problems(draw):
    lead = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=3)))
    return dict(lead=lead, k=draw(st.sampled_from([1, 2, 7, 16, 33, 112])),
                n=draw(st.sampled_from([1, 3, 16, 17, 40, 64, 65, 130, 256])), bias=draw(st.booleans()),
                factor=draw(st.sampled_from([1.0, 0.5, -3.0])), op=draw(st.sampled_from(["fused", "identity", "matmul"])),
                seed=draw(st.integers(0, 2**31)))


def channels_last_graph(lead, k, n, *, bias, factor, op, seed):
    rng = np.random.default_rng(seed)
    weights, bias_v = rng.standard_normal((k, n)).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    inputs = {"x": rng.uniform(-2, 2, lead + (k,)).astype(np.float32)}
    b = GraphBuilder("rows")
    x = b.input("x", lead + (k,))
    if op == "matmul":
        bias, factor = False, 1.0
        y = b.matmul(x, b.const(weights))
    else:
        operands = [x, b.const(weights)] + ([b.const(bias_v)] if bias else [])
        perm = tuple(range(len(lead) + 1)) if op == "identity" else ()
        y = b.fused_matmul(*operands, **legacy(bias=bias, perm=perm, factor=factor))
    b.output("y", y)
    def rows(f):
        y = f(inputs["x"]) @ f(weights)
        return (y + f(bias_v) if bias else y) * factor
    return b.build(), inputs, Expected(rows(lambda a: a.astype(np.float64)), rows(lambda a: np.abs(a.astype(np.float64))), k)


@SOME
@given(p=row_problems(), lanes=st.sampled_from(LANES))
def test_channels_last_random_shapes(p, lanes, monkeypatch_lanes):
    monkeypatch_lanes(lanes)
    graph, inputs, expected = channels_last_graph(**p)
    exe = compile_llvm(graph, strict=True, threads=2)
    assert exe.steps[0].rule == CL_RULE, exe.report()
    expected.check(exe(**inputs)["y"], evaluate(graph, inputs)["y"])


@pytest.mark.parametrize("lanes", LANES)
@pytest.mark.parametrize("n", [3, 21, 130])
def test_channels_last_channels_past_a_whole_vector(n, lanes, monkeypatch):
    """N not a multiple of the vector: the last panel's partial vector (bias lanes, stores)."""
    monkeypatch.setenv("RLXPY_VECTOR_LANES", str(lanes))
    graph, inputs, expected = channels_last_graph((2, 13), 19, n, bias=True, factor=1.5, op="fused", seed=n)
    exe = compile_llvm(graph, compare_with="interp", strict=True)
    assert exe.steps[0].rule == CL_RULE
    expected.check(exe(**inputs)["y"], evaluate(graph, inputs)["y"])


def test_channels_last_large_output_aligned_and_not():
    graph, inputs, expected = channels_last_graph((3, 700), 20, 256, bias=True, factor=0.5, op="fused", seed=9)
    exe = compile_llvm(graph, compare_with="interp", strict=True, threads=2)
    assert exe.steps[0].rule == CL_RULE
    got = exe(**inputs)["y"]
    assert got.nbytes >= 2 << 20 and got.ctypes.data % ALIGNMENT == 0      # streaming stores
    expected.check(got, evaluate(graph, inputs)["y"])
    raw = np.empty(got.size + 16, np.float32)
    skew = (-raw.ctypes.data % ALIGNMENT) // 4 + 1
    out = raw[skew:skew + got.size].reshape(got.shape)
    assert np.array_equal(exe.run(inputs, out={"y": out})["y"], got)


# -- the neck ------------------------------------------------------------------------------------------


NECKS = [
    ("tiny", {}), ("small", {}), ("base_plus", {}), ("large", {}),
    ("base_plus", dict(fuse_type="avg")),
    ("base_plus", dict(interp="bilinear")),
    ("small", dict(interp="bilinear", fuse_type="avg", top_down_levels=(0, 1, 2, 3))),
    ("base_plus", dict(image_size=(64, 160))),
    ("tiny", dict(batch=2, interp="bilinear")),
    ("large", dict(top_down_levels=(1, 3))),
]


@pytest.mark.parametrize("variant, options", NECKS)
def test_every_neck_runs_on_the_fast_rule(variant, options):
    options = {"image_size": (64, 64), **options}
    cfg = FpnNeckConfig.for_hiera(variant, **options)
    params, inputs = synthetic_fpn_neck_weights(cfg, 1), synthetic_fpn_neck_inputs(cfg, 1)
    exe = rlxpy.compile(build_fpn_neck_ir(cfg), params, target="llvm", strict=True)
    rules = [s.rule for s in exe.steps]
    assert rules == [RULE] * 4, exe.report()
    assert all(not s.declined for s in exe.steps)
    got = exe(**inputs)
    ref = rlxpy.compile(build_fpn_neck_ir(cfg), params, target="interp")(**inputs)
    for name in ref:
        assert scaled_error(got[name], ref[name]) < TOL, name
