"""The object cache's key, made from the selection (each kernel's rule and Spec) before any IR
exists: a hit emits no IR; the key changes with the code generator's sources, a user rule's source
and every Spec field, and not with constants passed by pointer; a rule whose match breaks the
contract (a Spec that is not frozen data, constants it did not declare) is an error at selection."""

import dataclasses
import importlib.util
import shutil
import sys

import llvmlite.ir
import numpy as np
import pytest

import rlxpy
from rlxpy import GraphBuilder
from rlxpy.codegen import RULES, Rule, Spec, Unsupported
from rlxpy.codegen import cache as cache_mod
from rlxpy.codegen import key as key_mod
from rlxpy.codegen.emit.builder import F32
from rlxpy.codegen.isa import host_isa
from rlxpy.codegen.rule import spec_key
from rlxpy.codegen.select import select
from rlxpy.models.sam2 import FpnNeckConfig, build_fpn_neck_ir, synthetic_fpn_neck_inputs, synthetic_fpn_neck_weights

CFG = FpnNeckConfig.for_hiera("tiny", image_size=(64, 96), interp="bilinear", fuse_type="avg")
PARAMS = synthetic_fpn_neck_weights(CFG, 4)
INPUTS = synthetic_fpn_neck_inputs(CFG, 4)


def entries(directory):
    return sorted((directory / "llvm").glob("*.rlxobj"))


@pytest.fixture
def emissions(monkeypatch):
    """Counts the modules emitted (on a miss) and the kernels matched (on every compile)."""
    from rlxpy.codegen import backend, select as select_mod
    seen = {"match": 0, "emit": 0}
    original_emit, original_select = backend.emit_module, select_mod._select_node

    def counting_emit(name, kernels):
        seen["emit"] += len(kernels)
        return original_emit(name, kernels)

    def counting_select(*args):
        step = original_select(*args)
        seen["match"] += step.kind == "native"
        return step
    monkeypatch.setattr(backend, "emit_module", counting_emit)
    monkeypatch.setattr(select_mod, "_select_node", counting_select)
    return seen


def compile_unfused(cache):
    """The neck without passes: every lowering rule (matmul, transpose, the pointwise loop for
    bias_add, upsample_add and scale, the view for reshape, pos_encoding) runs."""
    return rlxpy.compile(build_fpn_neck_ir(CFG), PARAMS, target="llvm", cache=cache, pipeline="none")


def test_a_hit_builds_no_ir(tmp_path, monkeypatch, emissions):
    first = compile_unfused(tmp_path)
    natives = sum(s.kind == "native" for s in first.steps)
    assert first.cache_status == "miss" and natives >= 10
    assert emissions == {"match": natives, "emit": natives}
    expected = first(**INPUTS)

    def no_ir(*args, **kwargs):
        raise AssertionError("IR built on a cache hit")
    with monkeypatch.context() as m:
        m.setattr(llvmlite.ir.Module, "__init__", no_ir)
        m.setattr(llvmlite.ir.Function, "__init__", no_ir)
        m.setattr(llvmlite.ir.IRBuilder, "__init__", no_ir)
        second = compile_unfused(tmp_path)
    assert second.cache_status == "hit"
    assert emissions == {"match": 2 * natives, "emit": natives}
    assert "emit" not in second.compile_times and "select" in second.compile_times
    got = second(**INPUTS)
    for name, value in expected.items():
        assert np.array_equal(got[name], value), name


def test_kernels_and_ir_survive_a_hit(tmp_path):
    first = compile_unfused(tmp_path)
    second = compile_unfused(tmp_path)
    assert second.cache_status == "hit"

    def kernels(exe):
        return [(s.node.name, s.kind, s.rule, s.declined,
                 (s.symbol, s.extent, s.cost, spec_key(s.spec)) if s.kind == "native" else None)
                for s in exe.steps]
    assert kernels(first) == kernels(second)
    assert all(s.cost > 0 for s in second.steps if s.kind == "native")
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
    sources = sorted(p.relative_to(key_mod.PACKAGE).as_posix() for p in key_mod.PACKAGE.rglob("*.py"))
    assert {"rules/gemm_nchw.py", "emit/register_tile.py", "emitters.py", "key.py"} <= set(sources)
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
from dataclasses import dataclass
from rlxpy.codegen import Rule, Spec


@dataclass(frozen=True, kw_only=True)
class ScaleSpec(Spec):
    factor: float


class UserScale(Rule):
    name = "user"
    ops = ("scale",)

    def match(self, node, graph, target):
        return ScaleSpec(extent=node.type.numel, cost=1, operands=1, factor=node.attrs["factor"])

    def emit(self, spec, k):
        with k.parallel_loop() as i:
            k.store(k.b.fmul(k.load(k.ins[0], i), k.f32(spec.factor * EXTRA)), k.out, i)

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
    return module.UserScale()


def _scale_graph():
    b = GraphBuilder("user")
    x = b.input("x", (3, 7))
    b.output("y", b.scale(x, factor=0.5, name="half"))
    return b.build()


def test_an_edited_user_rule_misses(tmp_path, monkeypatch, rng):
    data = rng.standard_normal((3, 7)).astype(np.float32)
    cache = tmp_path / "cache"

    def compile_with(rule):
        monkeypatch.setitem(RULES.overrides, "scale", [rule])
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


@dataclasses.dataclass(frozen=True, kw_only=True)
class TableSpec(Spec):
    channels: int
    bias: tuple[float, ...]            # values the code embeds: in the Spec, so in the key


class TableBias(Rule):
    """bias_add with the bias's VALUES baked into the code as a table."""

    name = "table"
    ops = ("bias_add",)

    def match(self, node, graph, target):
        bias = graph[node.operands[1]]
        if bias.op != "const":
            raise Unsupported("bias is not a compile-time constant")
        channels = node.type.shape[-1]
        return TableSpec(extent=node.type.numel // channels, cost=channels, operands=2, channels=channels,
                         bias=tuple(float(v) for v in bias.value))

    def emit(self, spec, k):
        table = k.table("bias", F32, spec.bias)
        with k.parallel_loop() as r:
            with k.loop(0, spec.channels, name="c") as c:
                off = k.add(k.mul(r, spec.channels), c)
                k.store(k.b.fadd(k.load(k.ins[0], off), k.b.load(k.ptr(table, c))), k.out, off)


def _bias_graph(bias):
    b = GraphBuilder("baked")
    x = b.input("x", (4, 6))
    b.output("y", b.bias_add(x, b.const(bias), axis=-1, name="plus"))
    return b.build()


def test_spec_values_are_in_the_key(tmp_path, monkeypatch, rng):
    monkeypatch.setitem(RULES.overrides, "bias_add", [TableBias()])
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


def test_pos_encoding_keys_what_its_table_is_made_of():
    def spec(temperature):
        b = GraphBuilder("pos")
        b.output("p", b.pos_encoding(batch=1, dim=8, height=3, width=5, temperature=temperature))
        step, = select(b.build(), host_isa())
        return step.spec
    assert spec(100.0).temperature == 100.0
    assert spec_key(spec(100.0)) != spec_key(spec(1000.0))


def test_spec_keys_are_canonical():
    from rlxpy.ir.ops import Step
    a = TableSpec(extent=3, cost=1.5, operands=2, channels=2, bias=(0.1, -2.0))
    assert spec_key(a) == spec_key(TableSpec(extent=3, cost=1.5, operands=2, channels=2, bias=(0.1, -2.0)))
    assert spec_key(a) != spec_key(dataclasses.replace(a, bias=(0.1, -2.0000002)))
    assert "Step(op='scale'" in spec_key(Step.of("scale", factor=0.5))
    with pytest.raises(TypeError, match="a Spec field holds a ndarray, which has no stable key"):
        spec_key(np.ones(3))


def test_entries_of_another_format_simply_miss(tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(cache_mod, "FORMAT", 1)
        assert compile_unfused(tmp_path).cache_status == "miss"
    assert compile_unfused(tmp_path).cache_status == "miss"       # not "corrupt": another file
    assert compile_unfused(tmp_path).cache_status == "hit"


# -- rules that break the contract are refused at selection --------------------------------------------


class _Broken(Rule):
    name = "broken"
    ops = ("scale",)

    def __init__(self, result, constants=()):
        self.result, self._constants = result, constants

    def match(self, node, graph, target):
        return self.result

    def constants(self, spec, node, graph):
        return self._constants


@dataclasses.dataclass(frozen=True, kw_only=True)
class _ArraySpec(Spec):
    table: object


@pytest.mark.parametrize("rule, message", [
    (_Broken(42), "matched 42, not a Spec, an Alias or Unsupported"),
    (_Broken(_ArraySpec(extent=1, cost=1, operands=1, table=np.ones(2))), "has no stable key"),
    (_Broken(Spec(extent=1, cost=1, operands=3)), "Spec.operands is 3, the node has 1"),
    (_Broken(Spec(extent=-1, cost=1, operands=1)), "extent -1 is not a count"),
    (_Broken(Spec(extent=1, cost=1, operands=1, constants=1)), "declares 1 constant\\(s\\), constants\\(\\) gave 0"),
])
def test_a_rule_that_breaks_the_contract_is_an_error(monkeypatch, rule, message):
    monkeypatch.setitem(RULES.overrides, "scale", [rule])
    with pytest.raises(TypeError, match=message):
        rlxpy.codegen.compile_llvm(_scale_graph(), cache=False)
