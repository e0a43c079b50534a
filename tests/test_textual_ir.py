"""The textual IR: exact print -> parse -> print round trips, the .rlx/.safetensors pair, parse
errors at their exact line and column, and the `rlxpy graph` command."""

import base64
import math
import os
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pydot
import pytest

import rlxpy
from rlxpy import GraphBuilder, ParseError, load_graph, parse_graph, print_graph, save_graph
from rlxpy.cli import main
from rlxpy.interp import evaluate, sine_position_encoding
from rlxpy.ir import OPS, Graph, Node, TensorType
from rlxpy.ir.ops import POINTWISE
from rlxpy.models.sam2 import FpnNeckConfig, build_fpn_neck_ir
from rlxpy.params import bind_params
from conftest import legacy


def parsed_origin(origin: str) -> str:
    return "parser" if origin in ("builder", "parser") else origin


def assert_same_graph(a: Graph, b: Graph) -> None:
    """b is a parsed copy of a: same names, ops, operands, attributes (and their types), types,
    provenance and constant data, bit for bit (a NaN only as a NaN)."""
    assert b.name == a.name
    assert list(b.outputs.items()) == list(a.outputs.items())
    assert [n.name for n in b.nodes] == [n.name for n in a.nodes]
    for x, y in zip(a.nodes, b.nodes):
        assert (y.op, y.operands, y.type) == (x.op, x.operands, x.type), x.name
        assert list(y.attrs.items()) == list(x.attrs.items()), x.name
        assert [type(v) for v in y.attrs.values()] == [type(v) for v in x.attrs.values()], x.name
        assert y.origin == parsed_origin(x.origin), x.name
        if x.value is None:
            assert y.value is None
        else:
            assert y.value.dtype == x.value.dtype and y.value.shape == x.value.shape, x.name
            assert not y.value.flags.writeable
            nan = np.isnan(x.value)
            assert np.array_equal(np.isnan(y.value), nan), x.name
            assert np.array_equal(y.value[~nan].view(np.uint32), x.value[~nan].view(np.uint32)), x.name


def round_trip(graph: Graph, **kw) -> Graph:
    """print -> parse (with the handle constants) -> print must give the same text."""
    text = print_graph(graph, **kw)
    limit = kw.get("inline_limit", 8)
    consts = {n.name: n.value for n in graph.nodes if n.op == "const" and n.value.size > limit}
    parsed = parse_graph(text, consts=consts or None)
    assert print_graph(parsed, **kw) == text
    assert_same_graph(graph, parsed)
    return parsed


# ---------------------------------------------------------------------------------------------
# Round trips


def every_op_graph(rng) -> Graph:
    """Every op, every attribute kind (default and not), inline and handle consts, odd names."""
    b = GraphBuilder("every_op.v2")
    x = b.input("x", (2, 4, 6, 8))
    w = b.param('layer.0 "w"\\\n\tü€', (8, 16), value_name="w.0$a-b")
    bias = b.param("bias", (16,), value_name="_")
    coarse = b.input("coarse", (2, 16, 2, 3), value_name="0coarse")
    scalar = b.const(rng.standard_normal(()) * 100, name="scalar")
    b.const(rng.standard_normal(16), name="9")                        # 16 elements: a handle
    eight = b.const(rng.standard_normal((2, 4)), name="eight")         # 8 elements: inline
    b.const(rng.standard_normal((3, 3)), name="nine")                  # 9 elements: a handle
    y = b.matmul(x, w, name="y-1")
    y = b.bias_add(y, bias)                                            # default axis, omitted
    y = b.bias_add(y, b.const(rng.standard_normal(4)), axis=1)         # non-default int
    y = b.bias_add(y, b.const(rng.standard_normal(2)), axis=-4)        # negative int
    t = b.transpose(y, perm=(0, 3, 1, 2))
    up = b.upsample_add(t, coarse, mode="bilinear")                    # non-default string
    near = b.upsample_add(t, coarse)                                   # default string, omitted
    factors = [0.5, 1e-06, 10000.0, -3.25, 1e20, 2.0 ** -1074, float(rng.standard_normal()), 1.0]
    scaled = [b.scale(up if i % 2 else near, factor=f) for i, f in enumerate(factors)]
    r = b.reshape(scaled[0], shape=(2, 16, 24))
    pos = b.pos_encoding(batch=2, dim=16, height=4, width=6, temperature=20.5)
    pos_default = b.pos_encoding(batch=1, dim=4, height=1, width=1)
    fused = b.fused_matmul(x, w, bias, coarse, **legacy(bias=True, perm=(0, 3, 1, 2), upsample="nearest", factor=0.5))
    plain = b.fused_matmul(x, w)                                        # every attribute default
    batched = b.matmul(b.input("a", (3, 1, 2, 5)), b.input("bb", (4, 5, 2)))   # broadcasting
    mm = b.matmul(eight, b.const(rng.standard_normal((4, 2))))
    att = b.attention(x, x, b.input("vals", (2, 4, 6, 3)))            # optional float unset: omitted
    att_scaled = b.attention(eight, eight, eight, scale=-0.5)
    for i, v in enumerate([r, pos, pos_default, fused, plain, batched, mm, scalar, att, att_scaled, *scaled]):
        b.output(f"out_{i}", v)
    covered = {n.op for n in b.nodes}
    for op in OPS.values():       # a pointwise op declared later: its default form, by its declaration
        if op.name not in covered and op.has(POINTWISE) and all(a.kind == "elementwise" for a in op.access):
            b.output(f"op_{op.name}", b.op(op.name, *[near] * len(op.access)))
    b.output("again", fused)                                           # one value, two outputs
    graph = b.build()
    # provenance as passes will record it, including a name that needs escapes
    origins = {"y-1": "fuse-epilogue", "nine": 'fold-constants{x="1"}', "_": "bind-params"}
    return graph.with_nodes([n.with_(origin=origins.get(n.name, n.origin)) for n in graph.nodes])


def test_every_op_and_attribute_kind_round_trips(rng):
    graph = every_op_graph(rng)
    assert {n.op for n in graph.nodes} == set(OPS)
    text = print_graph(graph)
    assert text.startswith("graph @every_op.v2 {\n  %x = input {name = \"x\"} : tensor<2x4x6x8xf32>\n")
    assert text.endswith("  output @again = %" + graph.outputs["again"] + "\n}\n")
    assert '%w.0$a-b = param {name = "layer.0 \\"w\\"\\\\\\n\\tü€"} : tensor<8x16xf32>' in text
    assert '%9 = const @9 : tensor<16xf32>\n' in text
    assert '%nine = const @nine : tensor<3x3xf32> loc("fold-constants{x=\\"1\\"}")' in text
    assert '%eight = const dense<[[' in text
    assert "%y-1 = matmul(%x, %w.0$a-b) : tensor<2x4x6x16xf32> loc(\"fuse-epilogue\")" in text
    assert "bias_add(%y-1, %_) : tensor<2x4x6x16xf32>\n" in text                     # axis omitted
    assert "{axis = 1}" in text and "{axis = -4}" in text
    assert '{mode = "bilinear"}' in text and "mode = \"nearest\"" not in text
    for f in ("0.5", "1e-06", "10000.0", "-3.25", "1e+20", "5e-324"):
        assert f"{{factor = {f}}}" in text
    assert "{factor = 1.0}" in text                   # scale's factor has no default: always printed
    assert "{batch = 2, dim = 16, height = 4, width = 6, temperature = 20.5}" in text
    assert "{batch = 1, dim = 4, height = 1, width = 1} :" in text
    assert ('fused_matmul(%x, %w.0$a-b, %_, %0coarse) {perm = [0, 3, 1, 2], epilogue = [bias_add {axis = 1}, '
            'upsample_add, scale {factor = 0.5}]} : tensor<2x16x4x6xf32>') in text
    assert "fused_matmul(%x, %w.0$a-b) : tensor<2x4x6x16xf32>" in text
    assert "matmul(%a, %bb) : tensor<3x4x2x2xf32>" in text
    assert "attention(%x, %x, %vals) : tensor<2x4x6x3xf32>" in text
    assert "attention(%eight, %eight, %eight) {scale = -0.5} : tensor<2x4xf32>" in text
    round_trip(graph)


@pytest.mark.parametrize("variant", ["tiny", "small", "base_plus", "large"])
def test_fpn_neck_of_every_variant_round_trips(variant):
    graph = build_fpn_neck_ir(FpnNeckConfig.for_hiera(variant))
    parsed = round_trip(graph)
    assert all(n.origin == "parser" for n in parsed.nodes)


@pytest.mark.parametrize("options", [
    dict(variant="tiny", image_size=(64, 96), batch=2, fuse_type="avg", interp="bilinear"),
    dict(variant="small", image_size=(512, 256), top_down_levels=()),
    dict(variant="base_plus", image_size=(256, 256), top_down_levels=(0, 1, 2, 3), fuse_type="avg"),
    dict(variant="large", image_size=(96, 64), batch=3, top_down_levels=(1, 3), interp="bilinear"),
])
def test_fpn_neck_options_round_trip(options):
    graph = build_fpn_neck_ir(FpnNeckConfig(**options))
    round_trip(graph)
    if options.get("fuse_type") == "avg":
        assert "{factor = 0.5}" in print_graph(graph)


def folded_neck(rng, cfg: FpnNeckConfig) -> Graph:
    """The neck with random weights bound as consts and the position encodings folded to consts
    by hand, as fold-constants will leave it: large handle consts with provenance."""
    params = {k: rng.standard_normal(v.shape).astype(np.float32)
              for k, v in build_fpn_neck_ir(cfg).param_types.items()}
    graph = bind_params(build_fpn_neck_ir(cfg), params)
    nodes = []
    for n in graph.nodes:
        if n.op == "pos_encoding":
            a = n.attrs
            value = sine_position_encoding(a["batch"], a["dim"], a["height"], a["width"], a["temperature"])
            value = np.array(value, dtype=np.float32)
            value.setflags(write=False)
            n = Node(n.name, "const", (), {}, n.type, value, "fold-constants")
        nodes.append(n)
    return rlxpy.ir.verify(graph.with_nodes(nodes))


def test_bound_and_folded_neck_round_trips_and_runs_the_same(tmp_path, rng):
    cfg = FpnNeckConfig.for_hiera("tiny", image_size=(64, 96), batch=2, fuse_type="avg", interp="bilinear",
                                  top_down_levels=(1, 2, 3))
    graph = folded_neck(rng, cfg)
    text = print_graph(graph)
    assert '%w0 = const @w0 : tensor<256x96x1x1xf32> loc("bind-params")' in text
    assert '%pos0 = const @pos0 : tensor<2x256x16x24xf32> loc("fold-constants")' in text
    files = save_graph(graph, tmp_path / "neck.rlx")
    assert files == [tmp_path / "neck.rlx", tmp_path / "neck.safetensors"]
    assert (tmp_path / "neck.rlx").read_text() == text
    loaded = load_graph(tmp_path / "neck.rlx")
    assert print_graph(loaded) == text
    assert_same_graph(graph, loaded)
    inputs = {f"x{i}": rng.standard_normal(cfg.input_shape(i)).astype(np.float32) for i in range(4)}
    want, got = evaluate(graph, inputs), evaluate(loaded, inputs)
    assert list(got) == list(want)
    for k in want:
        assert np.array_equal(got[k], want[k]), k


def test_float32_constants_round_trip_bit_exactly(rng):
    """Random bit patterns (subnormals, huge, tiny, negative zero) plus inf, -inf and nan, inline."""
    bits = rng.integers(0, 2**32, size=4000, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32).copy()
    values[:8] = [np.inf, -np.inf, np.nan, -0.0, np.finfo(np.float32).max, np.finfo(np.float32).tiny,
                  np.float32(1e-45), np.float32(0.1)]
    b = GraphBuilder("floats")
    b.const(values[:8], name="special")
    b.const(np.float32(values[9]), name="rank0")
    big = b.const(values.reshape(4, 10, 100), name="big")
    b.output("o", big)
    graph = b.build()
    text = print_graph(graph, inline_limit=values.size)
    assert "%special = const dense<[inf, -inf, nan, -0.0, 3.4028235e+38, 1.1754944e-38, 1e-45, 0.1]>" in text
    assert "@big" not in text
    round_trip(graph, inline_limit=values.size)


def test_float_attributes_round_trip_exactly(rng):
    factors = np.concatenate([rng.standard_normal(50) * 10.0 ** rng.integers(-300, 300, 50),
                              [5e-324, 1.7976931348623157e308, -0.0, 0.1, 1 / 3]])
    b = GraphBuilder("factors")
    x = b.input("x", (2, 3))
    for i, f in enumerate(factors):
        b.output(f"o{i}", b.scale(x, factor=float(f)))
    parsed = round_trip(b.build())
    got = [n.attrs["factor"] for n in parsed.nodes if n.op == "scale"]
    assert [math.copysign(1, g) for g in got] == [math.copysign(1, f) for f in factors]
    assert got == list(factors)


def test_inline_limit_decides_between_dense_and_handle(rng):
    b = GraphBuilder("limits")
    c = b.const(rng.standard_normal((2, 3)), name="c")
    b.output("o", c)
    graph = b.build()
    assert "const dense<" in print_graph(graph, inline_limit=6)
    assert "%c = const @c : tensor<2x3xf32>" in print_graph(graph, inline_limit=5)
    assert "%c = const @c" in print_graph(graph, inline_limit=0)
    round_trip(graph, inline_limit=0)
    for bad in (-1, 1.5, True, "8"):
        with pytest.raises(ValueError, match="inline_limit must be a non-negative integer"):
            print_graph(graph, inline_limit=bad)


def test_parser_reads_hand_written_text():
    """Comments, blank lines, a node split over lines, `()` and `{}`, ints for float attributes,
    outputs between nodes; provenance and locations are recorded."""
    text = """// a hand-written graph
graph @hand {   // trailing comment

  %x = input {name = "x"} : tensor<2x4xf32>
  output @first = %x
  %s = scale(%x)
       {factor = 2}   // an int, widened to 2.0
       : tensor<2x4xf32>
  %c = const() {} dense<[[1, 2], [3, 4], [5, 6], [7, 8]]> : tensor<4x2xf32> loc("by-hand")
  %m = matmul(%s, %c) : tensor<2x2xf32>
  output @second = %m
}
// the end
"""
    g = parse_graph(text)
    assert list(g.outputs.items()) == [("first", "x"), ("second", "m")]
    assert g["s"].attrs == {"factor": 2.0} and isinstance(g["s"].attrs["factor"], float)
    assert g["c"].value.dtype == np.float32 and g["c"].value.tolist() == [[1, 2], [3, 4], [5, 6], [7, 8]]
    assert g["c"].origin == "by-hand" and g["x"].origin == "parser"
    assert (g["x"].loc, g["s"].loc, g["c"].loc, g["m"].loc) == ((4, 3), (6, 3), (9, 3), (10, 3))
    assert print_graph(g) == """graph @hand {
  %x = input {name = "x"} : tensor<2x4xf32>
  %s = scale(%x) {factor = 2.0} : tensor<2x4xf32>
  %c = const dense<[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]> : tensor<4x2xf32> loc("by-hand")
  %m = matmul(%s, %c) : tensor<2x2xf32>
  output @first = %x
  output @second = %m
}
"""
    x = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    out = rlxpy.compile(g)(x=x)
    assert np.allclose(out["second"], (2 * x) @ g["c"].value, rtol=1e-6)


def test_printer_prints_broken_graphs_for_instruments():
    """A pass may leave a graph the verifier rejects; printing it must still work."""
    t = TensorType((2, 2))
    g = Graph("broken", [
        Node("a", "input", (), {"name": "a"}, t),
        Node("b", "softmax", ("a",), {"axis": 1}, t),
        Node("c", "const", (), {}, t),                      # no data
        Node("d", "scale", ("ghost",), {"factor": 1}, t),   # dangling, non-canonical int factor
    ], {"o": "d"})
    assert print_graph(g) == """graph @broken {
  %a = input {name = "a"} : tensor<2x2xf32>
  %b = softmax(%a) {axis = 1} : tensor<2x2xf32>
  %c = const @c : tensor<2x2xf32>
  %d = scale(%ghost) {factor = 1} : tensor<2x2xf32>
  output @o = %d
}
"""
    bad = Graph("bad", [Node("a", "input", (), {"name": {"not": "printable"}}, t)], {"o": "a"})
    with pytest.raises(TypeError, match=r"node %a \(input\): attribute 'name' holds a dict"):
        print_graph(bad)


# ---------------------------------------------------------------------------------------------
# Constants by handle, and the .rlx/.safetensors pair


HANDLE_TEXT = """graph @h {
  %x = input {name = "x"} : tensor<3x4xf32>
  %w = const @w : tensor<4x5xf32>
  %0 = matmul(%x, %w) : tensor<3x5xf32>
  output @y = %0
}
"""


def test_handles_resolve_from_consts_and_are_copied(rng):
    w = rng.standard_normal((4, 5)).astype(np.float32)
    g = parse_graph(HANDLE_TEXT, consts={"w": w})
    assert np.array_equal(g["w"].value, w) and not g["w"].value.flags.writeable
    w[0, 0] += 1                                      # the graph keeps its own copy
    assert not np.array_equal(g["w"].value, w)


@pytest.mark.parametrize("consts, message", [
    (None, 'node %w (const): missing constant @w: no constants were given (print the graph with consts="resources", '
           'pass consts= to parse_graph, or use load_graph)'),
    ({"v": np.ones((4, 5), np.float32)}, "node %w (const): missing constant @w: not in the constants given"),
    ({"w": np.ones((5, 4), np.float32)}, "node %w (const): constant @w is float32 of shape [5, 4], but the declared type is tensor<4x5xf32> (float32 of shape [4, 5])"),
    ({"w": np.ones((4, 5), np.float64)}, "node %w (const): constant @w is float64 of shape [4, 5], but the declared type"),
    ({"w": [[1.0] * 5] * 4}, "node %w (const): constant @w is a list, expected a numpy array"),
])
def test_bad_handles_are_errors_at_the_handle(consts, message):
    with pytest.raises(ParseError) as e:
        parse_graph(HANDLE_TEXT, source="h.rlx", consts=consts)
    assert (e.value.line, e.value.column, e.value.source) == (3, 14, "h.rlx")
    assert str(e.value).startswith(f"h.rlx:3:14: {message}")


def test_unused_constants_are_an_error(rng):
    w = rng.standard_normal((4, 5)).astype(np.float32)
    with pytest.raises(ParseError, match=r"^1:1: the constants given hold\(s\) 1 constant\(s\) that no "
                                         r"'const @NAME' uses: 'extra'"):
        parse_graph(HANDLE_TEXT, consts={"w": w, "extra": w})


def test_save_and_load_the_pair(tmp_path, rng):
    w = rng.standard_normal((4, 5)).astype(np.float32)
    g = parse_graph(HANDLE_TEXT, consts={"w": w})
    assert save_graph(g, tmp_path / "h.rlx") == [tmp_path / "h.rlx", tmp_path / "h.safetensors"]
    loaded = load_graph(str(tmp_path / "h.rlx"))
    assert_same_graph(g, loaded)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    assert np.array_equal(rlxpy.compile(loaded)(x=x)["y"], rlxpy.compile(g)(x=x)["y"])
    from safetensors import safe_open
    with safe_open(str(tmp_path / "h.safetensors"), framework="numpy") as f:
        assert list(f.keys()) == ["w"]
        assert f.metadata() == {"format": "rlxpy-consts", "graph": "h"}
    # saving a graph without large constants removes the stale safetensors file
    small = GraphBuilder("h")
    small.output("y", small.scale(small.input("x", (3, 4)), factor=2.0))
    assert save_graph(small.build(), tmp_path / "h.rlx") == [tmp_path / "h.rlx"]
    assert not (tmp_path / "h.safetensors").exists()
    assert print_graph(load_graph(tmp_path / "h.rlx")) == print_graph(small.build())


def test_pair_errors_name_the_files(tmp_path, rng):
    g = parse_graph(HANDLE_TEXT, consts={"w": rng.standard_normal((4, 5)).astype(np.float32)})
    path = tmp_path / "h.rlx"
    save_graph(g, path)
    (tmp_path / "h.safetensors").rename(tmp_path / "moved.safetensors")
    with pytest.raises(ParseError) as e:
        load_graph(path)
    assert str(e.value) == (f"{path}:3:14: node %w (const): missing constant @w: {tmp_path / 'h.safetensors'} "
                            "does not exist (the large constants of h.rlx are saved there)")
    from safetensors.numpy import save_file
    save_file({"w": rng.standard_normal((4, 5)).astype(np.float32),
               "stale": np.ones(3, np.float32)}, str(tmp_path / "h.safetensors"))
    with pytest.raises(ParseError, match=r"h.safetensors hold\(s\) 1 constant\(s\) that no 'const @NAME' uses: 'stale'"):
        load_graph(path)
    save_file({"w": rng.standard_normal((4, 5)).astype(np.float16)}, str(tmp_path / "h.safetensors"))
    with pytest.raises(ParseError, match=r":3:14: node %w \(const\): constant @w is float16 of shape \[4, 5\]"):
        load_graph(path)
    (tmp_path / "h.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(rlxpy.RlxError, match=r"constants file .*h.safetensors: not a readable safetensors file"):
        load_graph(path)
    with pytest.raises(rlxpy.RlxError, match=r"graph file .*nope.rlx: not found"):
        load_graph(tmp_path / "nope.rlx")
    (tmp_path / "latin1.rlx").write_bytes(b"graph @g { // caf\xe9\n}")
    with pytest.raises(rlxpy.RlxError, match=r"latin1.rlx: not UTF-8 text \(invalid continuation byte at byte 17\)"):
        load_graph(tmp_path / "latin1.rlx")
    with pytest.raises(rlxpy.RlxError, match=r"must end in .rlx"):
        save_graph(g, tmp_path / "h.txt")
    with pytest.raises(rlxpy.RlxError, match=r"directory .*missing does not exist"):
        save_graph(g, tmp_path / "missing" / "h.rlx")
    no_data = g.with_nodes([n.with_(value=None) if n.op == "const" else n for n in g.nodes])
    with pytest.raises(rlxpy.RlxError, match=r"cannot save graph @h: const %w has no data"):
        save_graph(no_data, tmp_path / "h2.rlx")


# ---------------------------------------------------------------------------------------------
# The resources section: handle constants carried by the text itself


def resource_of(array: np.ndarray) -> str:
    """Independent of the printer: the raw little-endian float32 bytes, base64."""
    return base64.b64encode(np.asarray(array, dtype="<f4").tobytes()).decode("ascii")


def with_resources(*entries: str, text: str = HANDLE_TEXT) -> str:
    return text + "resources {\n" + "".join(f"  {e}\n" for e in entries) + "}\n"


def test_resources_make_the_text_self_contained(rng):
    """Random bit patterns (NaNs with payloads, subnormals, -0.0) survive bit for bit."""
    cfg = FpnNeckConfig.for_hiera("tiny", image_size=(64, 96), fuse_type="avg", top_down_levels=(1, 2, 3))
    graph = folded_neck(rng, cfg)
    bits = rng.integers(0, 2**32, size=graph["pos1"].type.numel, dtype=np.uint64).astype(np.uint32)
    odd = bits.view(np.float32).reshape(graph["pos1"].type.shape)
    odd.setflags(write=False)
    graph = graph.with_nodes([n.with_(value=odd) if n.name == "pos1" else n for n in graph.nodes])
    text = print_graph(graph, consts="resources")
    body, section = text.split("}\nresources {\n")
    assert body + "}\n" == print_graph(graph)                      # the graph part is unchanged
    handles = [n for n in graph.nodes if n.op == "const" and n.value.size > 8]
    lines = section.splitlines()
    assert lines[-1] == "}" and len(lines) == len(handles) + 1
    for line, node in zip(lines, handles):
        assert line == f'  @{node.name} = "{resource_of(node.value)}"'
    parsed = parse_graph(text)                                     # no consts= needed
    assert_same_graph(graph, parsed)
    assert np.array_equal(parsed["pos1"].value.view(np.uint32), bits.reshape(odd.shape))
    assert print_graph(parsed, consts="resources") == text
    # consts= and inline_limit= combine: everything by handle, every handle a resource
    assert_same_graph(graph, parse_graph(print_graph(graph, inline_limit=0, consts="resources")))
    for bad in ("inline", "", None):
        with pytest.raises(ValueError, match="consts must be one of 'handles', 'resources'"):
            print_graph(graph, consts=bad)


def test_a_const_without_data_prints_as_a_bare_handle():
    """The printer prints broken graphs (for instruments): no data, no resource."""
    g = Graph("g", [Node("c", "const", (), {}, TensorType((4, 4)), None)], {"y": "c"})
    assert print_graph(g, consts="resources") == print_graph(g)


def test_save_graph_with_resources_writes_one_file(tmp_path, rng):
    w = rng.standard_normal((4, 5)).astype(np.float32)
    g = parse_graph(HANDLE_TEXT, consts={"w": w})
    path = tmp_path / "h.rlx"
    save_graph(g, path)
    assert (tmp_path / "h.safetensors").exists()
    assert save_graph(g, path, consts="resources") == [path]     # and the stale sidecar is gone
    assert not (tmp_path / "h.safetensors").exists()
    assert path.read_text() == with_resources(f'@w = "{resource_of(w)}"')
    assert_same_graph(g, load_graph(path))


def test_resources_and_the_sidecar_may_share_the_work(tmp_path, rng):
    text = HANDLE_TEXT.replace("  %0 = matmul(%x, %w)", "  %v = const @v : tensor<4x5xf32>\n"
                               "  %s = matmul(%x, %v) : tensor<3x5xf32>\n  %0 = matmul(%x, %w)")
    text = text.replace("output @y = %0", "output @y = %0\n  output @z = %s")
    w, v = rng.standard_normal((2, 4, 5)).astype(np.float32)
    from safetensors.numpy import save_file
    (tmp_path / "m.rlx").write_text(with_resources(f'@v = "{resource_of(v)}"', text=text))
    save_file({"w": w}, str(tmp_path / "m.safetensors"))
    g = load_graph(tmp_path / "m.rlx")
    assert np.array_equal(g["w"].value, w) and np.array_equal(g["v"].value, v)


RESOURCE_ERRORS = [
    ("unused", ['@w = "{w}"', '@extra = "AACAPw=="'], 9, 3,
     "resource @extra is not used: expected a const that names it ('%name = const @extra : tensor<...>')"),
    ("too-short", ['@w = "AACAPwAAAEA="'], 8, 3,
     "resource @w holds 8 bytes, but node %w (const) at line 3, column 3 is tensor<4x5xf32>: expected 80 bytes "
     "(20 little-endian float32 values)"),
    ("too-long", ['@w = "{w21}"'], 8, 3, "resource @w holds 84 bytes, but node %w (const)"),
    ("bad-character", ['@w = "AAAA*AAA"'], 8, 13,
     "resource @w: unexpected character '*' in base64 data; expected A-Z, a-z, 0-9, '+', '/' and '=' padding at the end"),
    ("non-ascii", ['@w = "AAAAéAAA"'], 8, 13, "resource @w: unexpected character 'é' in base64 data"),
    ("escape", ['@w = "AAAA\\nAAA"'], 8, 13, "resource @w: unexpected character '\\\\' in base64 data"),
    ("bad-padding", ['@w = "AACAPwA"'], 8, 8,
     "resource @w: bad base64 data (Incorrect padding): expected groups of 4 characters, the last one padded with '='"),
    ("padding-inside", ['@w = "AA==AAAA"'], 8, 8, "resource @w: bad base64 data (Excess data after padding)"),
    ("unterminated", ['@w = "AACAPw==', '@v = "AA=="'], 8, 8,
     "unterminated string: expected a closing '\"' on the same line"),
    ("not-a-string", ['@w = AACAPw=='], 8, 8,
     "expected the data of resource @w as a base64 string in double quotes, got 'AACAPw'"),
    ("no-data", ['@w =', '@v = "AA=="'], 8, 7,
     "expected the data of resource @w as a base64 string in double quotes, got end of line"),
    ("missing-equals", ['@w "AACAPw=="'], 8, 6, "expected '=' after the resource name @w, got '\"AACAPw==\"'"),
    ("duplicate", ['@w = "{w}"', '@w = "{w}"'], 9, 3, "duplicate resource @w, already defined at line 8, column 3"),
    ("not-a-resource", ['%w = "{w}"'], 8, 3,
     "expected a resource ('@name = \"base64\"') or '}' to close the resources section, got '%w'"),
    ("bad-handle", ['@-w = "{w}"'], 8, 3, "expected a constant's handle after '@', got '@-w'"),
]


@pytest.mark.parametrize("entries, line, column, message", [case[1:] for case in RESOURCE_ERRORS],
                         ids=[case[0] for case in RESOURCE_ERRORS])
def test_resource_errors_name_line_and_column(entries, line, column, message, rng):
    w, w21 = resource_of(rng.standard_normal((4, 5))), resource_of(rng.standard_normal(21))
    text = with_resources(*(e.replace("{w}", w).replace("{w21}", w21) for e in entries))
    with pytest.raises(ParseError) as e:
        parse_graph(text, source="r.rlx")
    assert (e.value.line, e.value.column) == (line, column), str(e.value)
    assert str(e.value).startswith(f"r.rlx:{line}:{column}: {message}"), str(e.value)


def test_resource_section_syntax_errors():
    for text, where, message in [
        (HANDLE_TEXT + "resources\n", "8:1", "expected '{' after 'resources', got end of file"),
        (HANDLE_TEXT + "resources {\n", "8:1", "expected a resource ('@name = \"base64\"') or '}' to close"),
        (HANDLE_TEXT + "resources {\n}\n}\n", "9:1", "unexpected '}' after the end of the resources section "
                                                     "(closed by '}' on line 8); expected the end of the file"),
        (HANDLE_TEXT + "resources {\n}\nresources {\n}\n", "9:1", "unexpected 'resources' after the end of the "
                                                                   "resources section"),
    ]:
        with pytest.raises(ParseError) as e:
            parse_graph(text)
        assert str(e.value).startswith(f"{where}: {message}"), str(e.value)


def test_a_handle_from_resources_and_from_the_sidecar_is_an_error(tmp_path, rng):
    w = rng.standard_normal((4, 5)).astype(np.float32)
    text = with_resources(f'@w = "{resource_of(w)}"')
    with pytest.raises(ParseError, match=r"^8:3: resource @w is given twice: by this resources section and by the "
                                         r"constants given; expected it in only one of them"):
        parse_graph(text, consts={"w": w})
    from safetensors.numpy import save_file
    (tmp_path / "h.rlx").write_text(text)
    save_file({"w": w}, str(tmp_path / "h.safetensors"))
    with pytest.raises(ParseError) as e:
        load_graph(tmp_path / "h.rlx")
    assert str(e.value) == (f"{tmp_path / 'h.rlx'}:8:3: resource @w is given twice: by this resources section and "
                            f"by {tmp_path / 'h.safetensors'}; expected it in only one of them")


def test_a_missing_handle_says_where_it_was_looked_for(rng):
    text = with_resources('@v = "AACAPw=="', text=HANDLE_TEXT)
    with pytest.raises(ParseError, match=r"^3:14: node %w \(const\): missing constant @w: not in the resources "
                                         r"section, and no constants were given"):
        parse_graph(text)
    with pytest.raises(ParseError, match=r"^3:14: node %w \(const\): missing constant @w: not in the resources "
                                         r"section, and not in the constants given"):
        parse_graph(text, consts={"u": np.ones(1, np.float32)})


# ---------------------------------------------------------------------------------------------
# Parse errors: each at the exact line and column of the offending token


BASE = """graph @g {
  %x = input {name = "x"} : tensor<2x3xf32>
  %w = param {name = "w"} : tensor<3x4xf32>
  %0 = matmul(%x, %w) : tensor<2x4xf32>
  %t = transpose(%0) {perm = [1, 0]} : tensor<4x2xf32>
  output @y = %t
}
"""


def edit(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def test_base_text_parses():
    assert print_graph(parse_graph(BASE)) == BASE


PARSE_ERRORS = [
    # unexpected tokens
    ("expected-colon", edit("{perm = [1, 0]} :", "{perm = [1, 0]} {} :"), 5, 38,
     "expected ':' before the result type, got '{'"),
    ("colon-at-end-of-line", edit(' : tensor<3x4xf32>', ''), 3, 26,
     "expected ':' before the result type, got end of line"),
    ("missing-equals", edit("%0 = matmul", "%0 matmul"), 4, 6, "expected '=' after %0, got 'matmul'"),
    ("missing-comma", edit("(%x, %w)", "(%x %w)"), 4, 18, "expected ',' or ')' after an operand, got '%w'"),
    ("not-a-value", edit("(%x, %w)", "(%x, w)"), 4, 19, "expected an operand like %0, got 'w'"),
    ("bad-value-name", edit("(%x, %w)", "(%x, %-w)"), 4, 19, "expected a value name, got '%-w'"),
    ("missing-graph", BASE.replace("graph @g", "grap @g"), 1, 1, "expected 'graph' at the start of the file, got 'grap'"),
    ("bad-graph-name", BASE.replace("graph @g", "graph @9g"), 1, 7, "invalid graph name '@9g'"),
    ("bad-statement", edit("  output @y", "  outputs @y"), 6, 3,
     "expected a node ('%name = op ...'), an output ('output @name = %value') or '}' to close the graph, got 'outputs'"),
    ("unexpected-char", edit("(%x, %w)", "(%x; %w)"), 4, 17, "unexpected character ';'"),
    ("bad-attribute-value", edit("[1, 0]", "[1, @0]"), 5, 34,
     "expected an attribute value (a number, true, false, a string, a [list] or an op), got '@0'"),
    ("unclosed-graph", BASE[:-2], 7, 1, "expected a node ('%name = op ...'), an output ('output @name = %value') "
     "or '}' to close the graph, got end of file"),
    ("trailing-garbage", BASE + "%z = input\n", 8, 1,
     "unexpected '%z' after the end of the graph (closed by '}' on line 7); expected 'resources {' or the end of the file"),
    ("second-graph", BASE + BASE, 8, 1, "unexpected 'graph' after the end of the graph"),
    ("unterminated-string", edit('{name = "w"}', '{name = "w}'), 3, 22,
     "unterminated string: expected a closing '\"' on the same line"),
    ("bad-escape", edit('{name = "w"}', '{name = "w\\q"}'), 3, 24, "bad escape in string: Invalid \\escape"),
    ("deep-list", edit("[1, 0]", "[1, " + "[" * 70 + "]" * 70 + "]"), 5, 98, "lists nested more than 64 deep"),
    ("huge-int", edit("[1, 0]", "[1, 99999999999999999999]"), 5, 34, "integer 99999999999999999999 does not fit in 64 bits"),
    # ops and attributes
    ("unknown-op", edit("matmul", "matmull"), 4, 8, "unknown op 'matmull'; known ops: " + ", ".join(sorted(OPS))),
    ("unknown-attribute", edit("{perm = ", "{perms = "), 5, 23,
     "node %t (transpose): unknown attribute 'perms' (this op's attributes: perm)"),
    ("ill-typed-attribute", edit("[1, 0]", "[1.0, 0]"), 5, 30,
     "node %t (transpose): attribute 'perm' must be a list of integers, got [1.0, 0]"),
    ("string-for-int", edit('{name = "w"}', '{name = 3}'), 3, 22, "node %w (param): attribute 'name' must be a string, got 3"),
    ("missing-attribute", edit(" {perm = [1, 0]}", ""), 5, 8, "node %t (transpose): missing required attribute 'perm'"),
    ("duplicate-attribute", edit("{perm = [1, 0]}", "{perm = [1, 0], perm = [0, 1]}"), 5, 38,
     "node %t (transpose): duplicate attribute 'perm'"),
    # names
    ("undefined-value", edit("(%x, %w)", "(%x, %v)"), 4, 19, "node %0 (matmul): use of undefined value %v"),
    ("forward-reference", edit("(%x, %w)", "(%x, %t)"), 4, 19,
     "node %0 (matmul): forward reference: %t is defined later, at line 5, column 3; operands must be defined before their use"),
    ("self-reference", edit("transpose(%0)", "transpose(%t)"), 5, 18, "node %t (transpose): forward reference: %t is defined later, at line 5, column 3"),
    ("duplicate-value", edit("%w = param", "%x = param"), 3, 3, "duplicate value name %x, already defined at line 2, column 3"),
    ("undefined-output", edit("output @y = %t", "output @y = %q"), 6, 15, "output @y: use of undefined value %q"),
    ("duplicate-output", edit("output @y = %t", "output @y = %t\n  output @y = %0"), 7, 10,
     "duplicate output @y, already defined at line 6, column 10"),
    ("no-outputs", edit("  output @y = %t\n", ""), 6, 1,
     "graph @g has no outputs: expected at least one 'output @name = %value' before '}'"),
    # types (verifier errors, reported at the node)
    ("result-type-mismatch", edit(": tensor<2x4xf32>", ": tensor<2x5xf32>"), 4, 3,
     "node %0 (matmul): result type mismatch: declared tensor<2x5xf32>, expected tensor<2x4xf32>"),
    ("contraction-mismatch", edit("tensor<3x4xf32>", "tensor<5x4xf32>"), 4, 3,
     "node %0 (matmul): contraction mismatch: 'a' tensor<2x3xf32> has 3 columns but 'b' tensor<5x4xf32> has 5 rows"),
    ("dtype-mismatch", edit("tensor<2x3xf32>", "tensor<2x3xf16>"), 2, 3,
     "node %x (input): dtype mismatch: declared tensor<2x3xf16>, expected an f32 tensor"),
    ("duplicate-input-name", edit('param {name = "w"}', 'input {name = "x"}'), 3, 3,
     "node %w (input): duplicate input name 'x', already used by node %x (input) at line 2, column 3"),
    ("arity", edit("(%x, %w)", "(%x)"), 4, 3, "node %0 (matmul): takes 2 operand(s) (a, b), got 1"),
    # type syntax
    ("zero-dimension", edit("tensor<2x3xf32>", "tensor<2x0xf32>"), 2, 38, "tensor dimension 0 must be a positive integer"),
    ("unknown-element-type", edit("tensor<2x3xf32>", "tensor<2x3xf33>"), 2, 40,
     "unknown element type 'f33'; expected one of f16, f32, f64, i32, i64"),
    ("no-element-type", edit("tensor<2x3xf32>", "tensor<2x3>"), 2, 39,
     "expected 'x' and an element type (f16, f32, f64, i32, i64) after the last dimension, like tensor<2x3xf32>"),
    ("type-ends-in-x", edit("tensor<2x3xf32>", "tensor<2x>"), 2, 38, "expected an element type"),
    ("unclosed-type", edit("tensor<2x3xf32>", "tensor<2x3xf32"), 2, 43, "expected '>' to close the tensor type, got end of line"),
    ("space-in-type", edit("tensor<2x3xf32>", "tensor< 2x3xf32>"), 2, 36,
     "expected a shape and element type like 2x3xf32 after 'tensor<', got ' '"),
    ("bad-shape", edit("tensor<2x3xf32>", "tensor<2y3xf32>"), 2, 36, "bad tensor shape '2y3xf32'"),
    ("not-a-type", edit(": tensor<2x4xf32>", ": f32"), 4, 25, "expected a tensor type like tensor<2x3xf32>, got 'f32'"),
    ("huge-type", edit("tensor<2x3xf32>", "tensor<4294967296x4294967296xf32>"), 2, 36,
     "tensor<4294967296x4294967296xf32> has 18446744073709551616 elements (73786976294838206464 bytes), over "
     "the limit: a tensor has at most 64 dimensions and 2**62 bytes"),
    # the size limit, and text too large for int(): each a located error, found in linear time
    ("rank-65", edit("tensor<2x3xf32>", "tensor<" + "1x" * 65 + "f32>"), 2, 164,
     "tensor type with more than 64 dimensions: a tensor has at most 64 dimensions and 2**62 bytes"),
    ("20000-dims", edit("tensor<2x3xf32>", "tensor<" + "1x" * 20_000 + "f32>"), 2, 164,
     "tensor type with more than 64 dimensions"),
    ("500000-dims", edit("tensor<2x3xf32>", "tensor<" + "1x" * 500_000 + "f32>"), 2, 164,
     "tensor type with more than 64 dimensions"),
    ("dimension-of-5000-digits", edit("tensor<2x3xf32>", "tensor<" + "7" * 5000 + "x3xf32>"), 2, 36,
     "tensor dimension 7777777777777777777777777777777777777... (5000 characters) is over the size limit: "
     "a tensor has at most 64 dimensions and 2**62 bytes"),
    ("int-of-5000-digits", edit("[1, 0]", "[1, -" + "9" * 5000 + "]"), 5, 34,
     "integer -999999999999999999999999999999999999... (5001 characters) does not fit in 64 bits"),
    ("reshape-to-rank-65", edit("transpose(%0) {perm = [1, 0]}", "reshape(%0) {shape = [" + "1, " * 63 + "4, 2]}"),
     5, 3, "node %t (reshape): attribute 'shape' has 65 dimensions: a tensor of rank 65 is over the limit"),
    ("pos-encoding-too-large", edit("%t = transpose(%0) {perm = [1, 0]} : tensor<4x2xf32>",
                                    "%t = pos_encoding {batch = 4611686018427387904, dim = 4, height = 2, width = 1} "
                                    ": tensor<1x4x2x1xf32>"), 5, 3,
     "node %t (pos_encoding): attributes {batch = 4611686018427387904, dim = 4, height = 2, width = 1} make a "
     "result too large: tensor<4611686018427387904x4x2x1xf32> has 36893488147419103232 elements"),
    ("long-op-name", edit("matmul", "m" * 100_000), 4, 8,
     f"unknown op 'mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm... (100000 characters)'; known ops: {min(OPS)}"),
    ("long-bad-graph-name", BASE.replace("graph @g", "graph @9" + "g" * 100_000), 1, 7,
     "invalid graph name '@9ggggggggggggggggggggggggggggggggggg... (100002 characters)'"),
]

CONST_ERRORS = [
    ("missing-constant", "%c = const @c : tensor<2xf32>", 14,
     "node %c (const): missing constant @c: no constants were given"),
    ("no-payload", "%c = const : tensor<2xf32>", 14,
     "expected the constant's data after 'const': dense<...> or a handle like @w, got ':'"),
    ("ragged", "%c = const dense<[[1.0, 2.0], [3.0]]> : tensor<2x2xf32>", 33,
     "ragged dense literal: this element has shape [1], the first one in its list has shape [2]"),
    ("dense-shape", "%c = const dense<[[1.0, 2.0], [3.0, 4.0]]> : tensor<4xf32>", 14,
     "node %c (const): the dense literal has shape [2, 2], but the declared type is tensor<4xf32>"),
    ("out-of-range", "%c = const dense<[1e39, 2.0]> : tensor<2xf32>", 21,
     "number 1e39 is out of the float32 range (largest 3.4028235e+38); write inf for an infinity"),
    ("deep-dense", "%c = const dense<" + "[" * 70 + "1.0" + "]" * 70 + "> : tensor<1xf32>", 85,
     "dense literal nested more than 64 deep: a tensor has at most 64 dimensions and 2**62 bytes"),
    ("number-of-5000-digits", "%c = const dense<[" + "1" * 5000 + "]> : tensor<1xf32>", 21,
     "number 1111111111111111111111111111111111111... (5000 characters) is out of range"),
    ("not-a-number", "%c = const dense<[1.0, true]> : tensor<2xf32>", 26,
     "expected a number or '[' in the dense literal, got 'true'"),
    ("unclosed-dense", "%c = const dense<[1.0, 2.0] : tensor<2xf32>", 31, "expected '>' to close dense<..., got ':'"),
    ("payload-on-non-const", "%c = scale(%x) {factor = 2.0} dense<1.0> : tensor<2x3xf32>", 33,
     "expected ':' before the result type, got 'dense'"),
]


@pytest.mark.parametrize("text, line, column, message", [case[1:] for case in PARSE_ERRORS],
                         ids=[case[0] for case in PARSE_ERRORS])
def test_parse_errors_name_line_and_column(text, line, column, message):
    with pytest.raises(ParseError) as e:
        parse_graph(text, source="g.rlx")
    assert (e.value.line, e.value.column) == (line, column), str(e.value)
    assert str(e.value).startswith(f"g.rlx:{line}:{column}: {message}"), str(e.value)
    assert isinstance(e.value, rlxpy.RlxError)


@pytest.mark.parametrize("node, column, message", [case[1:] for case in CONST_ERRORS],
                         ids=[case[0] for case in CONST_ERRORS])
def test_const_errors_name_line_and_column(node, column, message):
    text = edit("  output @y", f"  {node}\n  output @y")
    with pytest.raises(ParseError) as e:
        parse_graph(text)
    assert (e.value.line, e.value.column) == (6, column), str(e.value)
    assert str(e.value).startswith(f"6:{column}: {message}"), str(e.value)


def test_numbers_with_leading_zeros_are_read_by_value():
    text = edit("[1, 0]", "[" + "0" * 5000 + "1, -" + "0" * 5000 + "0]",
                edit("tensor<2x3xf32>", "tensor<" + "0" * 5000 + "2x3xf32>"))
    assert print_graph(parse_graph(text)) == BASE


def test_long_strings_and_many_comment_lines_parse(rng):
    """Escapes, unicode and a long attribute string; a file of many comment lines."""
    name = "".join(rng.choice(list("ab\"\\\n\tü€𝄞 "), size=200_000))
    b = GraphBuilder("strings")
    b.output("y", b.scale(b.param(name, (2, 3)), factor=2.0))
    graph = b.build()
    text = "// a comment line\n" * 100_000 + print_graph(graph)
    assert parse_graph(text).params[0].attrs["name"] == name


def test_parse_graph_wants_text():
    with pytest.raises(TypeError, match="takes the text as a str, got bytes"):
        parse_graph(BASE.encode())


# ---------------------------------------------------------------------------------------------
# rlxpy graph


@pytest.fixture
def neck_file(tmp_path, rng):
    cfg = FpnNeckConfig.for_hiera("tiny", image_size=(64, 64), fuse_type="avg")
    graph = folded_neck(rng, cfg)
    save_graph(graph, tmp_path / "neck.rlx")
    return tmp_path / "neck.rlx", graph


def test_graph_command_prints_text_and_summary(neck_file, capsys):
    path, graph = neck_file
    assert main(["graph", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(print_graph(graph))
    summary = out[len(print_graph(graph)):].splitlines()
    counts = {}
    for n in graph.nodes:
        counts[n.op] = counts.get(n.op, 0) + 1
    assert summary[0] == f"// @fpn_neck: {len(graph)} nodes (" + ", ".join(f"{v} {k}" for k, v in counts.items()) + ")"
    assert summary[1].startswith("// outputs: @features_0 tensor<1x256x16x16xf32>, @pos_0 tensor<1x256x16x16xf32>")
    assert summary[2] == f"// consts: 0 inline, 12 by handle ({sum(n.type.nbytes for n in graph.of_op('const'))} bytes)"
    # the output is itself a valid graph file (the summary is comments)
    assert print_graph(parse_graph(out, consts={n.name: n.value for n in graph.of_op("const")})) == print_graph(graph)


def dot_vertices(text: str):
    """Vertex labels and edges of DOT text, read back by pydot's own parser."""
    with warnings.catch_warnings():   # pydot's grammar uses pyparsing names pyparsing 3.3 deprecates
        warnings.simplefilter("ignore", DeprecationWarning)
        dot = pydot.graph_from_dot_data(text)[0]
    labels = {n.get_name(): n.get("label") for n in dot.get_nodes() if n.get_name() not in ("node", "edge", "graph")}
    edges = [(e.get_source(), e.get_destination(), e.get("label")) for e in dot.get_edges()]
    return labels, edges


def test_graph_dot_without_graphviz(neck_file, tmp_path, capsys, monkeypatch):
    path, graph = neck_file
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))          # no `dot` anywhere
    assert main(["graph", str(path), "--dot", str(tmp_path / "neck.dot")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == [f"wrote {tmp_path / 'neck.dot'}",
                        f"Graphviz's dot is not on PATH: wrote only {tmp_path / 'neck.dot'} (install Graphviz to render svg)"]
    assert not (tmp_path / "neck.svg").exists()
    labels, edges = dot_vertices((tmp_path / "neck.dot").read_text())
    assert len(labels) == len(graph) + len(graph.outputs)
    assert len(edges) == sum(len(n.operands) for n in graph.nodes) + len(graph.outputs)
    assert labels["n0"] == '"input\\n%x0\\n{name = \\"x0\\"}\\ntensor<1x16x16x96xf32>"'
    assert '"const\\n%pos0\\ntensor<1x256x16x16xf32>\\nloc(\\"fold-constants\\")"' in labels.values()
    assert '"output @features_0"' in labels.values()
    assert {e[2] for e in edges} >= {'"a"', '"b"', '"x"', '"bias"', '"coarse"'}


def test_graph_dot_to_stdout_escapes_odd_names(tmp_path, capsys):
    b = GraphBuilder("odd")
    x = b.input("x", (2, 2))
    w = b.param('say "hi"\\n', (2, 2), value_name="w$-1")
    b.output("y", b.fused_matmul(x, w, b.const(np.arange(2) + 0.5), **legacy(bias=True)))
    save_graph(b.build(), tmp_path / "odd.rlx")
    assert main(["graph", str(tmp_path / "odd.rlx"), "--dot", "-"]) == 0
    labels, edges = dot_vertices(capsys.readouterr().out)
    assert labels["n1"] == '"param\\n%w$-1\\n{name = \\"say \\\\\\"hi\\\\\\"\\\\\\\\n\\"}\\ntensor<2x2xf32>"'
    assert sorted(e[2] for e in edges if e[1] == "n3") == ['"a"', '"b"', '"extra.0"']


def fake_dot(bin_dir: Path, body: str) -> None:
    """A stand-in for Graphviz's dot, to test the rendering branch where Graphviz is missing."""
    bin_dir.mkdir()
    script = bin_dir / "dot"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_graph_renders_with_dot_on_path(neck_file, tmp_path, capsys, monkeypatch):
    path, _ = neck_file
    fake_dot(tmp_path / "bin", 'echo "$@" > "${0%/*}/args"; echo rendered > "$4"')
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert main(["graph", str(path), "--dot", str(tmp_path / "neck.dot"), "--format", "png"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {tmp_path / 'neck.png'}"
    assert (tmp_path / "bin" / "args").read_text().split() == ["-Tpng", str(tmp_path / "neck.dot"), "-o",
                                                               str(tmp_path / "neck.png")]
    assert (tmp_path / "neck.png").read_text() == "rendered\n"


def test_graph_reports_a_failing_dot(neck_file, tmp_path, capsys, monkeypatch):
    path, _ = neck_file
    fake_dot(tmp_path / "bin", 'echo "Error: syntax error in line 1" >&2; exit 1')
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert main(["graph", str(path), "--dot", str(tmp_path / "neck.dot")]) == 2
    err = capsys.readouterr().err
    assert err == f"rlxpy graph: error: Graphviz dot failed to render {tmp_path / 'neck.dot'}: Error: syntax error in line 1\n"


@pytest.mark.skipif(not __import__("shutil").which("dot"), reason="Graphviz is not installed (the fake-dot tests cover the branch)")
def test_graph_renders_svg_with_real_graphviz(neck_file, tmp_path, capsys):
    path, graph = neck_file
    assert main(["graph", str(path), "--dot", str(tmp_path / "neck.dot")]) == 0
    svg = (tmp_path / "neck.svg").read_text()
    assert "<svg" in svg and svg.count('class="node"') == len(graph) + len(graph.outputs)
    assert "fold&#45;constants" in svg or "fold-constants" in svg


@pytest.mark.parametrize("args, message", [
    (["graph", "{tmp}/nope.rlx"], "rlxpy graph: error: graph file {tmp}/nope.rlx: not found"),
    (["graph", "{tmp}/bad.rlx"], "rlxpy graph: error: {tmp}/bad.rlx:2:8: unknown op 'conv'; known ops: " + min(OPS)),
    (["graph", "{tmp}/bad.rlx", "--format", "png"], "rlxpy graph: error: --format chooses what --dot renders; give --dot OUT.dot too"),
    (["graph", "{tmp}/good.rlx", "--dot", "-", "--format", "png"], "rlxpy graph: error: --format cannot render DOT written to stdout"),
    (["graph", "{tmp}/good.rlx", "--dot", "{tmp}/no/such/dir/g.dot"], "rlxpy graph: error: cannot write {tmp}/no/such/dir/g.dot: directory"),
    (["graph", "{tmp}/good.rlx", "--dot", "{tmp}/g.svg"], "rlxpy graph: error: --dot {tmp}/g.svg: the rendered svg would overwrite it"),
    (["graph", "{tmp}/good.rlx", "--inline-limit", "-1"], "rlxpy graph: error: --inline-limit -1: expected a number of elements >= 0"),
    (["graph", "{tmp}/good.rlx", "--format", "pdf", "--dot", "x.dot"], "rlxpy graph: error: argument --format: invalid choice: 'pdf'"),
])
def test_graph_command_errors_are_one_line(tmp_path, capsys, args, message):
    (tmp_path / "bad.rlx").write_text("graph @g {\n  %x = conv : tensor<2xf32>\n}\n")
    (tmp_path / "good.rlx").write_text(BASE)
    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message.format(tmp=tmp_path)) and err.count("\n") == 1, err
    assert not (tmp_path / "g.svg").exists()


def test_graph_command_as_a_process_has_no_traceback(tmp_path):
    (tmp_path / "bad.rlx").write_text(edit(": tensor<2x4xf32>", ": tensor<2x5xf32>"))
    done = subprocess.run([sys.executable, "-m", "rlxpy", "graph", str(tmp_path / "bad.rlx")],
                          capture_output=True, text=True, env={**os.environ, "RLXPY_TRACEBACK": ""})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (f"rlxpy graph: error: {tmp_path / 'bad.rlx'}:4:3: node %0 (matmul): result type "
                           "mismatch: declared tensor<2x5xf32>, expected tensor<2x4xf32>\n")
