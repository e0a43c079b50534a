"""attention(q, k, v, scale=): its declaration, its numpy rule and its three kernels.

The reference is written here, apart from rlxpy, in float64: scores by einsum over broadcast
operands, the softmax as exp(s - logsumexp(s)). The interpreter and every kernel (attention_flash,
attention_tile and attention_loop, each forced onto every shape below) must agree with it within
TOL of the largest |v| the output averages, at every vector width this host runs; the kernels are
also checked on every call against the interpreter (compare_with="interp"), which holds them to
the tolerance model's per-element budget. Shapes: Lq != Lk, D != Dv, odd sizes, a batch of heads,
operands that broadcast (keys shared by every head), a short last block of queries, key blocks
with a short tail, one key, and a long sequence on which the flash kernel must be chosen.
"""

import math
from dataclasses import replace

import numpy as np
import pytest

from rlxpy import GraphBuilder, VerifyError, parse_graph, print_graph
from rlxpy.codegen import RULES, compile_llvm
from rlxpy.codegen.isa import host_isa
from rlxpy.codegen.rules import attention_tiled
from rlxpy.codegen.rules.attention import AttentionLoop
from rlxpy.difftest import check_case, reduce_case, seeded_case
from rlxpy.difftest.generate import ATTENTION_OPS
from rlxpy.errors import MiscompileError
from rlxpy.interp import evaluate
from rlxpy.ir.ops import OPS

TOL = 2e-6
LANES = [n for n in (8, 16) if n <= host_isa().lanes]
KERNELS = ("attention_flash", "attention_tile", "attention_loop")

SHAPES = {
    "odd heads": ((2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 4)),
    "broadcast": ((2, 4, 33, 20), (1, 4, 37, 20), (2, 1, 37, 24)),    # shared keys; Dv 24
    "two blocks": ((70, 16), (150, 16), (150, 16)),                   # rank 2; v read in place
    "one key": ((1, 2, 3, 1), (1, 2, 1, 1), (1, 2, 1, 1)),
    "q-pool": ((3, 2, 4, 56), (3, 2, 16, 56), (3, 2, 16, 56)),        # SAM 2's transition shape
}


def reference(q, k, v, scale=None):
    """softmax(q k^T scale) v in float64, for numpy-broadcast leading axes."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    q = np.broadcast_to(q, batch + q.shape[-2:])
    k = np.broadcast_to(k, batch + k.shape[-2:])
    v = np.broadcast_to(v, batch + v.shape[-2:])
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = np.einsum("...id,...jd->...ij", q, k) * scale
    top = s.max(axis=-1, keepdims=True)
    log_sum = top + np.log(np.exp(s - top).sum(axis=-1, keepdims=True))
    return np.einsum("...ij,...jd->...id", np.exp(s - log_sum), v)


def attention_graph(shapes, **attrs):
    b = GraphBuilder("attn")
    q, k, v = (b.input(n, s) for n, s in zip("qkv", shapes))
    b.output("y", b.attention(q, k, v, **attrs))
    return b.build()


def data(shapes, rng, spread=1.0):
    return {n: (spread * rng.standard_normal(s)).astype(np.float32) for n, s in zip("qkv", shapes)}


def assert_close(got, inputs, scale=None, tol=TOL):
    want = reference(inputs["q"], inputs["k"], inputs["v"], scale)
    bound = tol * float(np.abs(inputs["v"]).max())
    assert got.shape == want.shape
    assert float(np.abs(got - want).max()) <= bound, float(np.abs(got - want).max()) / bound


@pytest.fixture(params=LANES, ids=[f"{n}lanes" for n in LANES])
def lanes(request, monkeypatch):
    monkeypatch.setenv("RLXPY_VECTOR_LANES", str(request.param))
    return request.param


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("RLXPY_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "attention-cache"))


def force(kernel, monkeypatch):
    """Make `kernel` the one selection picks: flash by calling every block of scores too big to
    keep (with key blocks of 12, so short sequences have several, and a short last one); tile is
    chosen by default on these shapes; loop once both vectorised rules are out of stack."""
    if kernel == "attention_flash":
        monkeypatch.setattr(attention_tiled, "TILE_BYTES", 0)
        monkeypatch.setattr(attention_tiled, "KEY_BLOCK", 12)
    elif kernel == "attention_loop":
        monkeypatch.setattr(attention_tiled, "TILE_BYTES", 0)
        monkeypatch.setattr(attention_tiled, "STACK_BYTES", 0)


# -- the declaration ----------------------------------------------------------------------------------

def test_types_broadcast_and_errors_name_the_operand():
    g = attention_graph(((2, 3, 5, 8), (1, 3, 7, 8), (2, 1, 7, 4)))
    assert g[g.outputs["y"]].type.shape == (2, 3, 5, 4)
    assert attention_graph(((5, 8), (2, 7, 8), (7, 3)))[g.outputs["y"]].type.shape == (2, 5, 3)
    cases = {
        ((4, 8), (6, 9), (6, 2)): r"'k' tensor<6x9xf32> has 9 features per key but 'q' tensor<4x8xf32> has 8",
        ((4, 8), (6, 8), (5, 2)): r"'v' tensor<5x2xf32> has 5 values but 'k' tensor<6x8xf32> has 6 keys",
        ((2, 4, 8), (3, 6, 8), (6, 2)): r"batch dimensions \[2\], \[3\], \[\] do not broadcast",
        ((8,), (6, 8), (6, 2)): r"operand 'q' tensor<8xf32> must have rank >= 2",
    }
    for shapes, message in cases.items():
        with pytest.raises(VerifyError, match=r"\(attention\): " + message):
            attention_graph(shapes)
    with pytest.raises(VerifyError, match=r"attribute 'scale' must be a finite number"):
        attention_graph(((4, 8), (6, 8), (6, 2)), scale="big")


def test_scale_defaults_to_one_over_sqrt_d_and_round_trips_as_text(rng):
    shapes = ((3, 6, 16), (3, 9, 16), (3, 9, 5))
    inputs = data(shapes, rng)
    default = evaluate(attention_graph(shapes), inputs)["y"]
    assert np.array_equal(default, evaluate(attention_graph(shapes, scale=0.25), inputs)["y"])
    assert np.array_equal(default, evaluate(attention_graph(shapes, scale=None), inputs)["y"])
    for attrs, text in (({}, "attention(%q, %k, %v) :"), ({"scale": -1.5}, "{scale = -1.5}")):
        printed = print_graph(attention_graph(shapes, **attrs))
        assert text in printed and print_graph(parse_graph(printed)) == printed


def test_rounding_grows_with_keys_and_features():
    from rlxpy.ir.types import TensorType as T
    op = OPS["attention"]
    small = op.roundings([T((4, 8)), T((16, 8)), T((16, 8))], {"scale": None})
    assert op.roundings([T((4, 8)), T((1600, 8)), T((1600, 8))], {"scale": None}) > 50 * small
    assert op.roundings([T((4, 800)), T((16, 800)), T((16, 8))], {"scale": None}) > 15 * small


# -- the interpreter ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", SHAPES)
@pytest.mark.parametrize("scale", [None, 3.0, -0.7])
def test_interpreter_against_float64(name, scale, rng):
    inputs = data(SHAPES[name], rng)
    assert_close(evaluate(attention_graph(SHAPES[name], scale=scale), inputs)["y"], inputs, scale)


def test_interpreter_works_in_chunks_on_long_sequences(rng, monkeypatch):
    from rlxpy.ir.ops import attention as decl
    shapes = ((2, 1, 30, 4), (2, 1, 50, 4), (2, 1, 50, 3))
    inputs = data(shapes, rng)
    whole = evaluate(attention_graph(shapes), inputs)["y"]
    monkeypatch.setattr(decl, "CHUNK_SCORES", 7 * 50)          # 7 query rows at a time
    assert list(decl.score_chunks(2, 30, 50))[:2] == [(slice(0, 1), slice(0, 7)), (slice(0, 1), slice(7, 14))]
    chunked = evaluate(attention_graph(shapes), inputs)["y"]
    assert_close(whole, inputs)
    assert_close(chunked, inputs)


# -- the kernels --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("name", SHAPES)
def test_kernels_against_float64(kernel, name, lanes, rng, monkeypatch):
    force(kernel, monkeypatch)
    scale = -0.7 if name == "broadcast" else None
    graph = attention_graph(SHAPES[name], scale=scale)
    inputs = data(SHAPES[name], rng)
    exe = compile_llvm(graph, cache=False, compare_with="interp", strict=True)
    assert exe.steps[0].rule == kernel, exe.report()
    assert_close(exe(**inputs)["y"], inputs, scale)


def test_long_sequences_take_the_flash_kernel(lanes, rng):
    """Lk = 1700: a block of queries' scores over all keys would not stay in cache (at 8 lanes as at
    16), so attention_flash streams the keys; attention_tile's reason is in the report."""
    shapes = ((1, 2, 40, 8), (1, 2, 1700, 8), (1, 2, 1700, 20))
    exe = compile_llvm(attention_graph(shapes), cache=False, compare_with="interp", strict=True)
    assert exe.steps[0].rule == "attention_flash"
    inputs = data(shapes, rng, spread=2.0)
    assert_close(exe(**inputs)["y"], inputs)
    shorter = compile_llvm(attention_graph(((1, 2, 40, 8), (1, 2, 200, 8), (1, 2, 200, 20))), cache=False)
    assert shorter.steps[0].rule == "attention_tile"
    assert "declined by attention_flash: the scores of a block of" in shorter.report()
    assert "fit in cache" in shorter.report()


def test_huge_features_fall_back_to_the_loop_with_reasons(rng):
    shapes = ((3, 9000), (4, 9000), (4, 3))
    exe = compile_llvm(attention_graph(shapes), cache=False, compare_with="interp", strict=True)
    report = exe.report()
    assert exe.steps[0].rule == "attention_loop"
    assert "declined by attention_flash: D = 9000 and Dv = 3 need" in report and "on its stack" in report
    assert "declined by attention_tile:" in report
    inputs = data(shapes, rng, spread=0.03)
    assert_close(exe(**inputs)["y"], inputs)


def test_large_scores_stay_finite(rng):
    """Scores in the hundreds: exp of the shifted scores never overflows, rows of nearly one-hot
    weights are still right."""
    shapes = ((2, 20, 16), (2, 70, 16), (2, 70, 9))
    inputs = data(shapes, rng, spread=3.0)
    largest = 30.0 * float(np.abs(np.einsum("bid,bjd->bij", inputs["q"], inputs["k"])).max())
    assert largest > 500
    for kernel in KERNELS:
        with pytest.MonkeyPatch.context() as mp:
            force(kernel, mp)
            exe = compile_llvm(attention_graph(shapes, scale=30.0), cache=False, compare_with="interp")
            got = exe(**inputs)["y"]
        assert exe.steps[0].rule == kernel and np.isfinite(got).all()
        assert_close(got, inputs, 30.0, tol=1e-6 * largest)      # a float32 score that large is off by ~1e-7 of it


def test_two_threads_give_the_same_bits_as_one(rng, monkeypatch):
    shapes = ((3, 2, 40, 8), (3, 2, 300, 8), (3, 2, 300, 40))
    inputs = data(shapes, rng)
    for kernel in KERNELS:
        with pytest.MonkeyPatch.context() as mp:
            force(kernel, mp)
            one = compile_llvm(attention_graph(shapes), cache=False, threads=1)(**inputs)["y"]
            two = compile_llvm(attention_graph(shapes), cache=False, threads=2)
            assert two.steps[0].rule == kernel
            assert np.array_equal(two(**inputs)["y"], one)


class DropsLastKey(AttentionLoop):
    """A planted miscompile: the kernel forgets the last key."""
    name = "test_drops_last_key"

    def match(self, node, graph, target):
        spec = super().match(node, graph, target)
        return replace(spec, g=replace(spec.g, lk=spec.g.lk - 1))


def test_a_kernel_that_drops_a_key_is_caught_named_and_reduced(monkeypatch):
    monkeypatch.setitem(RULES.overrides, "attention", [DropsLastKey()])
    shapes = ((2, 3, 6), (2, 40, 6), (2, 40, 5))
    exe = compile_llvm(attention_graph(shapes), cache=False, compare_with="interp")
    inputs = data(shapes, np.random.default_rng(0))
    with pytest.raises(MiscompileError, match=r"node %0 \(attention\)"):
        exe(**inputs)
    for seed in range(200):                      # a random graph with an attention in it
        case = seeded_case(seed)
        if any(n.op == "attention" and case.graph.type_of(n.operands[1]).shape[-2] > 2 for n in case.graph):
            break
    result = check_case(case.graph, case.inputs, params=case.params, target="llvm")
    assert result.first.stage == "kernel" and result.first.what == "attention", str(result.first)
    from rlxpy.params import bind_params
    reduced = reduce_case(bind_params(case.graph, case.params), case.inputs, target="llvm", max_tries=300)
    assert [n.op for n in reduced.graph if n.op not in ("input", "const")] == ["attention"]


# -- random graphs --------------------------------------------------------------------------------

def test_random_graphs_with_attention_pass_on_native_code():
    assert ATTENTION_OPS == [OPS["attention"]]                  # found by its trait and operands
    checked = 0
    for seed in range(40):
        case = seeded_case(seed, max_nodes=6)
        if not any(n.op == "attention" for n in case.graph):
            continue
        result = check_case(case.graph, case.inputs, params=case.params, target="llvm")
        assert result.ok, f"seed {seed}: {result.first}"
        checked += 1
        if checked == 4:
            break
    assert checked == 4
