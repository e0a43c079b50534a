"""The object cache's key, made from the lowering plan before any IR exists: a hit emits no IR;
the key changes with the code generator's sources, a user rule's source and the data a rule bakes
into code, and not with constants passed by pointer; what only emission knows (kernel costs, the
IR text) comes back from the entry."""

import importlib.util
import shutil
import sys

import llvmlite.ir
import numpy as np
import pytest

import rlxpy
from rlxpy import GraphBuilder
from rlxpy.codegen import cache as cache_mod
from rlxpy.codegen import key as key_mod
from rlxpy.codegen.emit import F32, KernelBuilder
from rlxpy.codegen.lower import plan_graph
from rlxpy.codegen.registry import LOWERINGS, Rule, Unsupported
from rlxpy.errors import CodegenError
from rlxpy.models.sam2 import FpnNeckConfig, build_fpn_neck_ir, synthetic_fpn_neck_inputs, synthetic_fpn_neck_weights

CFG = FpnNeckConfig.for_hiera("tiny", image_size=(64, 96), interp="bilinear", fuse_type="avg")
PARAMS = synthetic_fpn_neck_weights(CFG, 4)
INPUTS = synthetic_fpn_neck_inputs(CFG, 4)


def entries(directory):
    return sorted((directory / "llvm").glob("*.rlxobj"))


@pytest.fixture
def emissions(monkeypatch):
    """Counts KernelBuilder.define calls that went on to emit a function (not planning ones)."""
    seen = {"plan": 0, "emit": 0}
    original = KernelBuilder.define

    def counting(self, *args, **kwargs):
        seen["plan" if self.planning else "emit"] += 1
        return original(self, *args, **kwargs)
    monkeypatch.setattr(KernelBuilder, "define", counting)
    return seen


def compile_unfused(cache):
    """The neck without passes: every lowering rule (matmul, transpose, bias_add, upsample_add,
    scale, reshape, pos_encoding with its baked table) runs."""
    return rlxpy.compile(build_fpn_neck_ir(CFG), PARAMS, target="llvm", cache=cache, pipeline="none")


def test_a_hit_builds_no_ir(tmp_path, monkeypatch, emissions):
    first = compile_unfused(tmp_path)
    natives = sum(s.kind == "native" for s in first.steps)
    assert first.cache_status == "miss" and natives >= 10
    assert emissions == {"plan": natives, "emit": natives}
    expected = first(**INPUTS)

    def no_ir(*args, **kwargs):
        raise AssertionError("IR built on a cache hit")
    with monkeypatch.context() as m:
        m.setattr(llvmlite.ir.Module, "__init__", no_ir)
        m.setattr(llvmlite.ir.Function, "__init__", no_ir)
        m.setattr(llvmlite.ir.IRBuilder, "__init__", no_ir)
        second = compile_unfused(tmp_path)
    assert second.cache_status == "hit"
    assert emissions == {"plan": 2 * natives, "emit": natives}
    assert "lower" not in second.compile_times and "plan" in second.compile_times
    got = second(**INPUTS)
    for name, value in expected.items():
        assert np.array_equal(got[name], value), name


def test_kernel_costs_extents_and_ir_survive_a_hit(tmp_path):
    first = compile_unfused(tmp_path)
    second = compile_unfused(tmp_path)
    assert second.cache_status == "hit"

    def kernels(exe):
        return [(s.node.name, s.kind, s.rule, s.declined, s.kernel and (s.kernel.symbol, s.kernel.extent, s.kernel.cost))
                for s in exe.steps]
    assert kernels(first) == kernels(second)
    assert all(s.kernel.cost > 0 for s in second.steps if s.kind == "native")
    assert second.llvm_ir == first.llvm_ir and "define void" in second.llvm_ir
    assert second.optimized_llvm_ir == first.optimized_llvm_ir
    assert second.asm == first.asm
    strip = lambda report: [line for line in report.splitlines() if "object code:" not in line]  # noqa: E731
    assert strip(second.report()) == strip(first.report())


def test_weights_of_the_same_shapes_hit_and_run_with_their_own_values(tmp_path):
    compile_unfused(tmp_path)
    other = synthetic_fpn_neck_weights(CFG, 11)
    exe = rlxpy.compile(build_fpn_neck_ir(CFG), other, target="llvm", cache=tmp_path, pipeline="none")
    assert exe.cache_status == "hit"
    want = rlxpy.compile(build_fpn_neck_ir(CFG), other)(**INPUTS)
    got = exe(**INPUTS)
    for name in want:
        assert np.abs(got[name] - want[name]).max() <= 1e-5 * np.abs(want[name]).max(), name


# -- what changes the key ----------------------------------------------------------------------------


def test_the_package_digest_covers_every_codegen_source(tmp_path):
    sources = sorted(p.name for p in key_mod.PACKAGE.glob("*.py"))
    assert "lower_matmul_nchw.py" in sources and "key.py" in sources
    copy = tmp_path / "codegen"
    shutil.copytree(key_mod.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert key_mod.sources_digest(copy) == key_mod.package_digest()
    for name in sources:
        path = copy / name
        text = path.read_bytes()
        path.write_bytes(text + b"\n# edited\n")
        assert key_mod.sources_digest(copy) != key_mod.package_digest(), name
        path.write_bytes(text)


def test_an_edited_codegen_package_misses(tmp_path, monkeypatch):
    compile_unfused(tmp_path)
    monkeypatch.setattr(key_mod, "package_digest", lambda: "e" * 64)
    assert compile_unfused(tmp_path).cache_status == "miss"
    assert len(entries(tmp_path)) == 2


RULE_SOURCE = """
def scale_rule(k):
    k.define(extent=k.out_type.numel)
    x, = k.ins
    with k.parallel_loop() as i:
        k.store(k.b.fmul(k.load(x, i), k.f32(k.attrs["factor"] * EXTRA)), k.out, i)
    return k.finish(cost=1)

EXTRA = {extra}
"""


def _load_rule(tmp_path, monkeypatch, version, extra, comment=""):
    path = tmp_path / f"user_rules_v{version}.py"
    path.write_text(comment + RULE_SOURCE.format(extra=extra))
    name = f"user_rules_{version}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module.scale_rule


def _scale_graph():
    b = GraphBuilder("user")
    x = b.input("x", (3, 7))
    b.output("y", b.scale(x, factor=0.5, name="half"))
    return b.build()


def test_an_edited_user_rule_misses(tmp_path, monkeypatch, rng):
    data = rng.standard_normal((3, 7)).astype(np.float32)
    cache = tmp_path / "cache"

    def compile_with(fn):
        monkeypatch.setitem(LOWERINGS, "scale", [Rule("scale", "user", fn)])
        return rlxpy.codegen.compile_llvm(_scale_graph(), cache=cache, strict=True)

    v1 = _load_rule(tmp_path, monkeypatch, 1, "1.0")
    assert compile_with(v1).cache_status == "miss"
    exe = compile_with(v1)
    assert exe.cache_status == "hit" and np.array_equal(exe(x=data)["y"], data * np.float32(0.5))
    # the same code with a comment added: another source, another entry
    v2 = _load_rule(tmp_path, monkeypatch, 2, "1.0", comment="# tidied\n")
    assert compile_with(v2).cache_status == "miss"
    # different code: the old entry must not be used
    v3 = _load_rule(tmp_path, monkeypatch, 3, "2.0")
    exe = compile_with(v3)
    assert exe.cache_status == "miss" and np.array_equal(exe(x=data)["y"], data * np.float32(1.0))
    assert len(entries(cache)) == 3


def _baked_bias(k):
    """bias_add with the bias's VALUES baked into the code as a table (declared, so keyed)."""
    bias = k.operand_value(1)
    if bias is None:
        raise Unsupported("bias is not a compile-time constant")
    channels = k.out_type.shape[-1]
    k.define(extent=k.out_type.numel // channels, baked={"bias": bias.astype(np.float32)})
    table = k.global_table("bias", F32)
    x = k.ins[0]
    with k.parallel_loop() as r:
        with k.loop(0, channels, name="c") as c:
            off = k.add(k.mul(r, channels), c)
            k.store(k.b.fadd(k.load(x, off), k.b.load(k.ptr(table, c))), k.out, off)
    return k.finish(cost=channels)


def _bias_graph(bias):
    b = GraphBuilder("baked")
    x = b.input("x", (4, 6))
    b.output("y", b.bias_add(x, b.const(bias), axis=-1, name="plus"))
    return b.build()


def test_baked_values_are_in_the_key(tmp_path, monkeypatch, rng):
    monkeypatch.setitem(LOWERINGS, "bias_add", [Rule("bias_add", "baked", _baked_bias)])
    data = rng.standard_normal((4, 6)).astype(np.float32)
    first = rng.standard_normal(6).astype(np.float32)
    second = first.copy()
    second[3] += 1.0

    def run(bias):
        exe = rlxpy.codegen.compile_llvm(_bias_graph(bias), cache=tmp_path, strict=True)
        assert np.array_equal(exe(x=data)["y"], data + bias)
        return exe.cache_status
    assert run(first) == "miss"
    assert run(first.copy()) == "hit"                  # equal values, another array
    assert run(second) == "miss"                       # one value differs: the code differs
    assert run(second) == "hit"
    assert len(entries(tmp_path)) == 2


def test_baking_undeclared_data_is_refused(monkeypatch):
    def sneaky(k):
        k.define(extent=1)
        k.global_table("bias", F32)
    monkeypatch.setitem(LOWERINGS, "bias_add", [Rule("bias_add", "sneaky", sneaky)])
    with pytest.raises(RuntimeError, match=r"table 'bias' was not declared in define\(baked=...\)"):
        rlxpy.codegen.compile_llvm(_bias_graph(np.ones(6, np.float32)), cache=False)


def test_pos_encoding_keys_its_table():
    b = GraphBuilder("pos")
    b.output("p", b.pos_encoding(batch=1, dim=8, height=3, width=5, temperature=100.0))
    step, = plan_graph(b.build())
    kk = np.arange(4)
    assert np.array_equal(step.plan.baked["dim_t"], 100.0 ** (2 * (kk // 2) / 4))


def test_entries_of_another_format_simply_miss(tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(cache_mod, "FORMAT", 1)
        assert compile_unfused(tmp_path).cache_status == "miss"
    assert compile_unfused(tmp_path).cache_status == "miss"       # not "corrupt": another file
    assert compile_unfused(tmp_path).cache_status == "hit"


# -- rules that break the planning contract ------------------------------------------------------------


def test_a_rule_that_declines_after_define_is_never_stored(tmp_path, rng):
    def late(k):
        k.define(extent=1)
        raise Unsupported("changed its mind")
    generic = LOWERINGS["scale"]
    data = rng.standard_normal((3, 7)).astype(np.float32)
    with pytest.MonkeyPatch.context() as m:
        m.setitem(LOWERINGS, "scale", [Rule("scale", "late", late, 1)] + generic)
        for _ in range(2):
            exe = rlxpy.codegen.compile_llvm(_scale_graph(), cache=tmp_path)
            assert exe.cache_status == "not stored (node %half (scale): rule late declined after define())"
            assert exe.steps[0].rule == generic[0].name
            assert exe.steps[0].declined == ("late: changed its mind",)
            assert np.array_equal(exe(x=data)["y"], data * np.float32(0.5))
    assert entries(tmp_path) == []


def test_a_rule_that_decides_differently_when_emitting_is_an_error(monkeypatch):
    calls = []

    def fickle(k):
        calls.append(1)
        k.define(extent=k.out_type.numel + len(calls))
        return k.finish(cost=1)
    monkeypatch.setitem(LOWERINGS, "scale", [Rule("scale", "fickle", fickle)])
    with pytest.raises(CodegenError, match=r"node %half \(scale\): lowering rule fickle planned a kernel of "
                                           r"extent 22 .* but emitted extent 23.*must decide the same way"):
        rlxpy.codegen.compile_llvm(_scale_graph(), cache=False)
