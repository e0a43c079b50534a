"""The runtime of target="llvm": fallbacks, strict, report, out=, constant outputs, buffer reuse,
thread safety, input checks before any native call, and the per-node compare catching a bad kernel."""

import dataclasses
import gc
import threading

import numpy as np
import pytest

import rlxpy
from conftest import scaled_error
from rlxpy import GraphBuilder
from planted import Declines, ScaleRule
from rlxpy.codegen import RULES, compile_llvm
from rlxpy.errors import CodegenError, InputError, MiscompileError, RlxError
from rlxpy.interp import evaluate
from rlxpy.models.sam2 import FpnNeckConfig, build_fpn_neck_ir, synthetic_fpn_neck_weights
from test_codegen_neck import fused_neck

CFG = FpnNeckConfig.for_hiera("tiny", image_size=(64, 96), fuse_type="avg", top_down_levels=(1, 2, 3))
PARAMS = synthetic_fpn_neck_weights(CFG, 3)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("RLXPY_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "runtime-cache"))


@pytest.fixture(scope="module")
def fused_exe():
    return rlxpy.compile(fused_neck(CFG, PARAMS), target="llvm", cache=False)


def neck_inputs(rng, cfg=CFG):
    return {f"x{i}": rng.standard_normal(cfg.input_shape(i)).astype(np.float32) for i in range(4)}


def interp(inputs, cfg=CFG, params=PARAMS):
    return rlxpy.compile(build_fpn_neck_ir(cfg), params)(**inputs)


def assert_close(out, expected):
    assert list(out) == list(expected)
    for name in expected:
        assert scaled_error(out[name], expected[name]) < 1e-5, name


# -- fallback, strict, report ------------------------------------------------------------------------


def test_node_without_rule_runs_on_the_interpreter(monkeypatch, rng):
    monkeypatch.setitem(RULES.overrides, "scale", [])
    exe = rlxpy.compile(build_fpn_neck_ir(CFG), PARAMS, target="llvm", pipeline="none")
    scales = [n.name for n in exe.graph.nodes if n.op == "scale"]
    assert len(scales) == 2
    for name in scales:
        assert exe.placement[name] == "interp"
        assert exe.fallbacks[name] == "no LLVM lowering rule for op 'scale'"
    assert exe.placement[next(n.name for n in exe.graph.nodes if n.op == "matmul")] == "native"
    inputs = neck_inputs(rng)
    assert_close(exe(**inputs), interp(inputs))
    report = exe.report()
    assert "2 on the interpreter" in report
    assert f"%{scales[0]}" in report and "no LLVM lowering rule for op 'scale'" in report


def test_strict_turns_a_fallback_into_an_error(monkeypatch):
    monkeypatch.setitem(RULES.overrides, "scale", [])
    first = next(n.name for n in build_fpn_neck_ir(CFG).nodes if n.op == "scale")
    with pytest.raises(CodegenError, match=rf"node %{first} \(scale\): no LLVM lowering rule for op 'scale'; "
                                           r"strict=True forbids running it on the interpreter \(and 1 more\)"):
        rlxpy.compile(build_fpn_neck_ir(CFG), PARAMS, target="llvm", strict=True, pipeline="none")


def test_rules_that_decline_pass_to_the_next(monkeypatch, rng):
    picky = Declines("scale", "picky", "only factor 2", priority=2)
    also = Declines("scale", "also", "changed its mind", priority=1)
    generic = RULES.for_op("scale")
    monkeypatch.setitem(RULES.overrides, "scale", [picky, also] + generic)
    b = GraphBuilder("g")
    x = b.input("x", (3, 5))
    b.output("y", b.scale(x, factor=0.5, name="half"))
    exe = compile_llvm(b.build(), cache=False)
    assert exe.placement == {"half": "native"} and exe.steps[0].rule == generic[0].name
    assert exe.steps[0].declined == ("picky: only factor 2", "also: changed its mind")
    assert exe.llvm_ir.count("define ") == 1
    data = rng.standard_normal((3, 5)).astype(np.float32)
    assert np.array_equal(exe(x=data)["y"], data * np.float32(0.5))

    monkeypatch.setitem(RULES.overrides, "scale", [picky, also])
    exe = compile_llvm(b.build(), cache=False)
    assert exe.fallbacks["half"] == "every rule declined (picky: only factor 2; also: changed its mind)"
    assert np.array_equal(exe(x=data)["y"], data * np.float32(0.5))


def test_report_lists_every_node(fused_exe):
    report = fused_exe.report()
    assert report.startswith("@fpn_neck_fused on llvm (") and "4 native, 0 alias, 0 on the interpreter" in report
    assert "object code: off" in report
    for s in fused_exe.steps:
        assert f"%{s.node.name}" in report and s.symbol in report
    assert "every node runs on the numpy interpreter" in rlxpy.compile(build_fpn_neck_ir(CFG), PARAMS).report()


# -- outputs -------------------------------------------------------------------------------------


def test_constant_outputs_are_read_only_and_not_copied(fused_exe, rng):
    a = fused_exe(**neck_inputs(rng))
    b = fused_exe(**neck_inputs(rng))
    for i in range(4):
        pos = a[f"pos_{i}"]
        assert not pos.flags.writeable
        assert np.shares_memory(pos, b[f"pos_{i}"])
        with pytest.raises(ValueError):
            pos[0, 0, 0, 0] = 1.0
        assert a[f"features_{i}"].flags.writeable


def test_results_are_not_overwritten_by_a_later_call(fused_exe, rng):
    first_inputs = neck_inputs(rng)
    first = fused_exe(**first_inputs)
    kept = {k: v.copy() for k, v in first.items()}
    second = fused_exe(**neck_inputs(rng))
    for name in first:
        assert np.array_equal(first[name], kept[name]), name
        if name.startswith("features"):
            assert not np.shares_memory(first[name], second[name])
            assert not np.array_equal(first[name], second[name])
    assert_close(first, interp(first_inputs))


def test_out_arrays_are_written_in_place(fused_exe, rng):
    inputs = neck_inputs(rng)
    expected = fused_exe(**inputs)
    out = {"features_0": np.full(CFG.output_shape(0), np.nan, np.float32),
           "features_3": np.full(CFG.output_shape(3), np.nan, np.float32),
           "pos_1": np.full(CFG.output_shape(1), np.nan, np.float32)}
    got = fused_exe.run(inputs, out=out)
    for name, array in out.items():
        assert got[name] is array
        assert np.array_equal(array, expected[name]), name
    assert np.array_equal(got["features_1"], expected["features_1"])   # the others are fresh
    assert got["pos_1"].flags.writeable and not np.shares_memory(got["pos_1"], expected["pos_1"])


def test_interp_target_takes_out_arrays_too(rng):
    exe = rlxpy.compile(build_fpn_neck_ir(CFG), PARAMS)
    inputs = neck_inputs(rng)
    out = {"features_2": np.full(CFG.output_shape(2), np.nan, np.float32)}   # any element left unwritten shows
    got = exe.run(inputs, out=out)
    assert got["features_2"] is out["features_2"] and np.array_equal(out["features_2"], exe(**inputs)["features_2"])


def bad_outs(inputs):
    good = lambda i: np.zeros(CFG.output_shape(i), np.float32)
    shared = np.zeros((2,) + CFG.output_shape(0)[1:], np.float32)
    return [
        ({"features_9": good(0)}, r"out: unknown output 'features_9'; this graph returns 'features_0'"),
        ({"features_0": good(1)}, r"out 'features_0': expected a writable C-contiguous float32 array of shape "
                                  r"\[1, 256, 16, 24\], got shape \[1, 256, 8, 12\]"),
        ({"features_0": good(0).astype(np.float64)}, r"out 'features_0': .* got dtype float64"),
        ({"features_0": np.zeros(CFG.output_shape(0)[::-1], np.float32).T}, r"got a non-contiguous array"),
        ({"features_0": np.frombuffer(bytes(good(0).nbytes), np.float32).reshape(CFG.output_shape(0))},
         r"got a read-only array"),
        ({"features_0": [[0.0]]}, r"out 'features_0': expected .* got list"),
        ({"features_0": shared[0:1], "pos_0": shared[0:1]}, r"out 'pos_0' and out 'features_0' share memory"),
        ({"features_3": inputs["x3"].reshape(-1)[:256 * 2 * 3].reshape(1, 256, 2, 3)},
         r"out 'features_3' shares memory with input 'x3'"),
    ]


def test_bad_out_arrays_are_refused_before_any_native_call(fused_exe, rng, monkeypatch):
    calls = []
    for name, fn in list(fused_exe.program._functions.items()):
        monkeypatch.setitem(fused_exe.program._functions, name,
                            lambda *args, _fn=fn, _name=name: (calls.append(_name), _fn(*args)))
    inputs = neck_inputs(rng)
    inputs["x3"] = np.ascontiguousarray(np.repeat(inputs["x3"], 1, axis=0))   # an array we may slice
    for out, message in bad_outs(inputs):
        with pytest.raises(InputError, match=message):
            fused_exe.run(inputs, out=out)
    with pytest.raises(InputError, match="out= must be a dict"):
        fused_exe.run(inputs, out=[1])
    assert calls == []
    fused_exe(**inputs)
    assert set(calls) == set(fused_exe.program._functions)       # the recorder works


@pytest.mark.parametrize("mutate, message", [
    (lambda i: i.pop("x1"), r"missing input 'x1'"),
    (lambda i: i.update(x0=i["x0"][:, :-1]), r"input 'x0': wrong shape: expected shape \[1, 16, 24, 96\], got \[1, 15, 24, 96\]"),
    (lambda i: i.update(x2=i["x2"][0]), r"input 'x2': wrong rank"),
    (lambda i: i.update(x3=i["x3"].astype(np.int32)), r"input 'x3': dtype int32 is not a float type"),
    (lambda i: i.update(x4=i["x0"]), r"unknown input 'x4'"),
])
def test_bad_inputs_are_refused_before_any_native_call(fused_exe, rng, monkeypatch, mutate, message):
    calls = []
    for name, fn in list(fused_exe.program._functions.items()):
        monkeypatch.setitem(fused_exe.program._functions, name,
                            lambda *args, _fn=fn: (calls.append(1), _fn(*args)))
    inputs = neck_inputs(rng)
    mutate(inputs)
    with pytest.raises(InputError, match=message):
        fused_exe(**inputs)
    assert calls == []


def test_misaligned_strided_and_f64_inputs_are_converted(fused_exe, rng):
    inputs = neck_inputs(rng)
    expected = fused_exe(**inputs)
    x0 = inputs["x0"]
    raw = np.zeros(x0.nbytes + 1, np.uint8)
    misaligned = raw[1:].view(np.float32).reshape(x0.shape)
    misaligned[...] = x0
    assert not misaligned.flags.aligned
    odd = dict(inputs, x0=misaligned, x1=inputs["x1"].astype(np.float64),
               x2=np.asfortranarray(inputs["x2"]))
    got = fused_exe(**odd)
    for name in expected:
        assert np.array_equal(got[name], expected[name]), name


def test_outputs_that_alias_inputs_each_other_or_views_are_separate_arrays(rng):
    b = GraphBuilder("aliases")
    x = b.input("x", (4, 6))
    y = b.scale(x, factor=3.0)
    b.output("x_again", x)                               # an input
    b.output("y", y)
    b.output("y_too", y)                                 # the same value twice
    b.output("y_flat", b.reshape(y, shape=(24,)))        # a view of an output value
    b.output("x_flat", b.reshape(x, shape=(3, 8)))       # a view of an input
    b.output("k", b.reshape(b.const(np.arange(6.0)), shape=(2, 3)))   # a view of a constant
    exe = compile_llvm(b.build(), cache=False)
    data = rng.standard_normal((4, 6)).astype(np.float32)
    out = exe(x=data)
    assert np.array_equal(out["x_again"], data) and np.array_equal(out["x_flat"], data.reshape(3, 8))
    assert np.array_equal(out["y"], data * 3) and np.array_equal(out["y_too"], data * 3)
    assert np.array_equal(out["y_flat"], (data * 3).reshape(24))
    assert np.array_equal(out["k"], np.arange(6.0).reshape(2, 3)) and not out["k"].flags.writeable
    writable = [v for k, v in out.items() if k != "k"]
    for i, a in enumerate(writable):
        assert not np.shares_memory(a, data)
        for other in writable[i + 1:]:
            assert not np.shares_memory(a, other)
    out["y"][...] = 0                                    # the caller owns them: no effect elsewhere
    assert np.array_equal(out["y_too"], data * 3)
    again = exe.run({"x": data}, out={"y_flat": np.empty(24, np.float32), "y": np.empty((4, 6), np.float32)})
    assert np.array_equal(again["y_flat"], (data * 3).reshape(24)) and np.array_equal(again["y"], data * 3)


def test_graph_without_compute_nodes():
    b = GraphBuilder("consts")
    b.output("k", b.const(np.ones((2, 2))))
    exe = compile_llvm(b.build(), cache=False)
    assert exe.cache_status == "not needed (no kernels)"
    assert np.array_equal(exe()["k"], np.ones((2, 2)))


# -- memory and threads --------------------------------------------------------------------------


def test_intermediate_buffers_are_shared_by_values_with_disjoint_lifetimes(rng):
    b = GraphBuilder("chain")
    x = b.input("x", (64, 32))
    v = x
    for i in range(8):
        v = b.scale(b.bias_add(v, b.const(np.full(32, i, np.float32))), factor=0.5)
    b.output("y", v)
    graph = b.build()
    exe = compile_llvm(graph, cache=False)
    plan = exe.program
    assert len(plan.intermediates) == 15 and len(plan.slot_capacity) == 2
    assert plan.buffer_bytes == 2 * 64 * 32 * 4
    data = rng.standard_normal((64, 32)).astype(np.float32)
    assert np.array_equal(exe(x=data)["y"], evaluate(graph, {"x": data})["y"])


def test_concurrent_calls_from_threads(rng):
    cfg = FpnNeckConfig.for_hiera("tiny", image_size=(64, 64), interp="bilinear")
    params = synthetic_fpn_neck_weights(cfg, 5)
    exe = rlxpy.compile(build_fpn_neck_ir(cfg), params, target="llvm", threads=2)
    cases = [neck_inputs(np.random.default_rng(s), cfg) for s in range(6)]
    expected = [interp(c, cfg, params) for c in cases]
    errors, barrier = [], threading.Barrier(6)

    def worker(i):
        try:
            barrier.wait()
            for _ in range(4):
                assert_close(exe(**cases[i]), expected[i])
        except BaseException as e:          # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert 1 <= exe.program.buffer_sets <= 6


def test_the_code_lives_as_long_as_the_executable(rng):
    exe = rlxpy.compile(fused_neck(CFG, PARAMS), target="llvm", cache=False)
    for _ in range(3):                       # other engines come and go
        rlxpy.compile(fused_neck(CFG, PARAMS), target="llvm", cache=False)
        gc.collect()
    inputs = neck_inputs(rng)
    assert_close(exe(**inputs), interp(inputs))


# -- compare mode and options ----------------------------------------------------------------------


def test_compare_catches_a_broken_kernel_and_names_the_node(monkeypatch, rng):
    monkeypatch.setitem(RULES.overrides, "scale", [ScaleRule("broken", offset=1.0)])
    inputs = neck_inputs(rng)
    silent = rlxpy.compile(build_fpn_neck_ir(CFG), PARAMS, target="llvm", cache=False, pipeline="none")
    assert scaled_error(silent(**inputs)["features_3"], interp(inputs)["features_3"]) < 1e-5  # no scale
    assert scaled_error(silent(**inputs)["features_2"], interp(inputs)["features_2"]) > 0.1  # wrong, unnoticed
    checked = rlxpy.compile(build_fpn_neck_ir(CFG), PARAMS, target="llvm", cache=False, compare_with="interp",
                            pipeline="none")
    first = next(n.name for n in checked.graph.nodes if n.op == "scale")
    with pytest.raises(MiscompileError, match=rf"node %{first} \(scale\): native kernel rlx_fpn_neck_\d+_scale_\w+ "
                                              r"differs from the interpreter: off by .* at \["):
        checked(**inputs)


def test_compare_catches_a_broken_matmul_epilogue(monkeypatch, rng):
    from rlxpy.codegen.emit.epilogue import LoweredStep
    from rlxpy.codegen.rules.gemm import Gemm

    class WrongFactor(Gemm):
        name = "wrong"

        def match(self, node, graph, target):
            spec = super().match(node, graph, target)
            return dataclasses.replace(spec, steps=spec.steps + (LoweredStep("scale", (("factor", 1.001),), ()),))
    monkeypatch.setitem(RULES.overrides, "fused_matmul", [WrongFactor()])
    exe = rlxpy.compile(fused_neck(CFG, PARAMS), target="llvm", cache=False, compare_with="interp")
    with pytest.raises(MiscompileError, match=r"node %\w+ \(fused_matmul\)"):
        exe(**neck_inputs(rng))


@pytest.mark.parametrize("options, message", [
    (dict(compare_with="numpy"), "compare_with must be None or 'interp', got 'numpy'"),
    (dict(threads=0), "threads must be a positive integer or None, got 0"),
    (dict(threads=True), "threads must be a positive integer or None, got True"),
    (dict(strict="yes"), "strict must be True or False"),
    (dict(cache=3), "cache must be True, False or a directory, got 3"),
])
def test_bad_options(options, message):
    with pytest.raises(RlxError, match=message):
        rlxpy.compile(build_fpn_neck_ir(CFG), PARAMS, target="llvm", **options)


def test_llvm_options_are_refused_for_interp():
    with pytest.raises(RlxError, match="option 'threads' does not apply to target 'interp'"):
        rlxpy.compile(build_fpn_neck_ir(CFG), PARAMS, target="interp", threads=2)


def test_each_call_in_flight_gets_its_own_buffer_set():
    b = GraphBuilder("two")
    x = b.input("x", (8, 8))
    b.output("y", b.scale(b.scale(x, factor=2.0), factor=3.0))
    program = compile_llvm(b.build(), cache=False).program
    first, second = program._acquire(), program._acquire()
    assert first is not second and program.buffer_sets == 2
    assert not any(np.shares_memory(a, c) for a in first.slots for c in second.slots)
    program._release(second)
    assert program._acquire() is second                     # reused, not reallocated
    assert program.buffer_sets == 2


def test_compiling_from_several_threads(rng):
    sizes = [(3, 5), (4, 7), (6, 2), (5, 5)]
    results, errors = {}, []

    def job(shape):
        try:
            b = GraphBuilder("t")
            x = b.input("x", shape)
            b.output("y", b.transpose(b.scale(x, factor=-2.0), perm=(1, 0)))
            exe = compile_llvm(b.build(), cache=False)
            data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
            results[shape] = (exe(x=data)["y"], data)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=job, args=(s,)) for s in sizes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    for shape, (y, data) in results.items():
        assert np.array_equal(y, (data * np.float32(-2.0)).T)


def test_unbound_params_are_refused():
    with pytest.raises(CodegenError, match=r"node %w3 \(param\): param 'image_encoder.neck.convs.0.conv.weight' "
                                           r"is unbound; compile\(\) binds params before code generation"):
        compile_llvm(build_fpn_neck_ir(CFG), cache=False)
