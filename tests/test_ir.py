"""The IR: building graphs, type inference, and every rule the verifier enforces."""

import re

import numpy as np
import pytest

from rlxpy import GraphBuilder, TensorType, VerifyError
from rlxpy.ir import Graph, Node, verify
from conftest import legacy


def small_graph():
    b = GraphBuilder("g")
    x = b.input("x", (2, 3, 4))
    w = b.param("w", (4, 5))
    y = b.matmul(x, w, name="y")
    z = b.bias_add(y, b.const(np.arange(5)), name="z")
    b.output("out", b.transpose(z, perm=(0, 2, 1)))
    return b.build()


def test_builder_infers_types_and_names():
    g = small_graph()
    assert g.type_of("y") == TensorType((2, 3, 5))
    assert g.output_types == {"out": TensorType((2, 5, 3))}
    assert g.input_types == {"x": TensorType((2, 3, 4))}
    assert g.param_types == {"w": TensorType((4, 5))}
    assert [n.op for n in g] == ["input", "param", "matmul", "const", "bias_add", "transpose"]
    assert all(n.origin == "builder" for n in g)


def test_builder_has_a_method_per_compute_op():
    from rlxpy.ir import OPS
    b = GraphBuilder()
    for name, op in OPS.items():
        if not op.is_source:
            assert callable(getattr(b, name)) and name in dir(b)
    with pytest.raises(AttributeError):
        b.convolution


def test_const_is_read_only_float32_copy():
    data = np.arange(6, dtype=np.float64).reshape(2, 3)
    b = GraphBuilder()
    c = b.const(data)
    node = b.nodes[-1]
    data[0, 0] = 99
    assert node.value.dtype == np.float32 and node.value[0, 0] == 0
    assert not node.value.flags.writeable
    assert c.type == TensorType((2, 3))


@pytest.mark.parametrize("build, message", [
    (lambda b: b.matmul(b.input("a", (2, 3)), b.input("c", (4, 5))), "contraction mismatch: 'a' tensor<2x3xf32> has 3 columns but 'b' tensor<4x5xf32> has 4 rows"),
    (lambda b: b.matmul(b.input("a", (2, 3, 4)), b.input("c", (3, 4, 5))), "batch dimensions [2] and [3] do not broadcast"),
    (lambda b: b.bias_add(b.input("a", (2, 3)), b.input("c", (2,))), "'bias' must have shape [3]"),
    (lambda b: b.bias_add(b.input("a", (2, 3)), b.input("c", (3,)), axis=2), "axis 2 is out of range for rank 2"),
    (lambda b: b.upsample_add(b.input("a", (1, 2, 4, 4)), b.input("c", (1, 2, 3, 2))), "expected shape [1, 2, 2, 2]"),
    (lambda b: b.upsample_add(b.input("a", (1, 2, 4, 4)), b.input("c", (1, 2, 2, 2)), mode="cubic"), "attribute 'mode' must be one of 'nearest', 'bilinear'"),
    (lambda b: b.transpose(b.input("a", (2, 3)), perm=(0, 0)), "perm [0, 0] is not a permutation of 0..1"),
    (lambda b: b.reshape(b.input("a", (2, 3)), shape=(4, 2)), "cannot reshape tensor<2x3xf32> (6 elements) to [4, 2] (8 elements)"),
    (lambda b: b.scale(b.input("a", (2, 3))), "missing required attribute 'factor'"),
    (lambda b: b.scale(b.input("a", (2, 3)), factor=float("nan")), "attribute 'factor' must be a finite number"),
    (lambda b: b.scale(b.input("a", (2, 3)), factor=2.0, axis=1), "unknown attribute 'axis'"),
    (lambda b: b.pos_encoding(batch=1, dim=6, height=2, width=2), "'dim' must be a multiple of 4"),
    (lambda b: b.matmul(b.input("a", (2, 3))), "takes 2 operand(s) (a, b), got 1"),
    (lambda b: b.matmul(b.input("a", (2, 3), "f16"), b.input("c", (3, 2))), "dtype mismatch: operand 'a' is f16, expected f32"),
    (lambda b: b.op("conv2d", b.input("a", (2, 3))), "unknown op 'conv2d'"),
])
def test_builder_rejects_bad_nodes(build, message):
    with pytest.raises(VerifyError) as e:
        build(GraphBuilder())
    assert message in str(e.value)


def test_builder_rejects_duplicates_and_foreign_values():
    b = GraphBuilder()
    x = b.input("x", (2, 2))
    with pytest.raises(VerifyError, match="duplicate name %x"):
        b.input("x", (2, 2))
    b.output("o", x)
    with pytest.raises(VerifyError, match="duplicate output name 'o'"):
        b.output("o", x)
    other = GraphBuilder().input("y", (2, 2))
    with pytest.raises(VerifyError, match="not a value of this builder"):
        b.scale(other, factor=2.0)


def _node(name, op, operands=(), attrs=None, shape=(2, 2), dtype="f32", value=None):
    attrs = attrs if attrs is not None else {}
    return Node(name, op, tuple(operands), attrs, TensorType(shape, dtype), value)


def _graph(*nodes, outputs=None):
    return Graph("g", nodes, outputs or {"o": nodes[-1].name})


def test_verifier_rejects_dangling_reference():
    g = _graph(_node("a", "input", attrs={"name": "a"}), _node("s", "scale", ["ghost"], {"factor": 2.0}))
    with pytest.raises(VerifyError, match=r"node %s \(scale\): dangling reference: operand %ghost is not defined"):
        verify(g)


def test_verifier_rejects_forward_reference():
    g = _graph(_node("s", "scale", ["a"], {"factor": 2.0}), _node("a", "input", attrs={"name": "a"}))
    with pytest.raises(VerifyError, match=r"node %s \(scale\): forward reference: operand %a is defined later"):
        verify(g)


def test_verifier_rejects_cycles():
    g = _graph(_node("a", "input", attrs={"name": "a"}),
               _node("s", "upsample_add", ["a", "t"], {"mode": "nearest"}, shape=(2, 2)),
               _node("t", "scale", ["s"], {"factor": 2.0}))
    with pytest.raises(VerifyError, match=r"cycle in the graph: %s -> %t -> %s|cycle in the graph: %t -> %s -> %t"):
        verify(g)


def test_verifier_rejects_duplicate_names():
    g = _graph(_node("a", "input", attrs={"name": "a"}), _node("a", "input", attrs={"name": "b"}))
    with pytest.raises(VerifyError, match=r"duplicate name %a"):
        verify(g)
    g = _graph(_node("a", "input", attrs={"name": "a"}), _node("b", "input", attrs={"name": "a"}))
    with pytest.raises(VerifyError, match=r"node %b \(input\): duplicate input name 'a'"):
        verify(g)


def test_verifier_rejects_unknown_ops():
    g = _graph(_node("a", "input", attrs={"name": "a"}), _node("b", "softmax", ["a"]))
    from rlxpy.ir.ops import OPS
    known = re.escape(", ".join(sorted(OPS)))
    with pytest.raises(VerifyError, match=rf"node %b \(softmax\): unknown op 'softmax'; known ops: {known}$"):
        verify(g)


def test_verifier_rejects_wrong_declared_types():
    g = _graph(_node("a", "input", attrs={"name": "a"}, shape=(2, 3)),
               _node("t", "transpose", ["a"], {"perm": (1, 0)}, shape=(2, 3)))
    with pytest.raises(VerifyError, match=r"node %t \(transpose\): result type mismatch: declared tensor<2x3xf32>, expected tensor<3x2xf32>"):
        verify(g)
    g = _graph(_node("a", "input", attrs={"name": "a"}),
               _node("t", "scale", ["a"], {"factor": 1.0}, dtype="f64"))
    with pytest.raises(VerifyError, match=r"node %t \(scale\): dtype mismatch"):
        verify(g)
    g = _graph(_node("a", "input", attrs={"name": "a"}, dtype="i32"))
    with pytest.raises(VerifyError, match=r"node %a \(input\): dtype mismatch: declared tensor<2x2xi32>"):
        verify(g)


def test_verifier_rejects_bad_consts_and_outputs():
    g = _graph(_node("c", "const", value=np.ones((2, 2), np.float64)))
    with pytest.raises(VerifyError, match="const data is float64, expected float32"):
        verify(g)
    g = _graph(_node("c", "const", value=np.ones((3,), np.float32)))
    with pytest.raises(VerifyError, match=r"const data has shape \[3\], declared tensor<2x2xf32>"):
        verify(g)
    g = _graph(_node("a", "input", attrs={"name": "a"}), outputs={"o": "nope"})
    with pytest.raises(VerifyError, match="output 'o' refers to %nope, which is not defined"):
        verify(g)
    with pytest.raises(VerifyError, match="has no outputs"):
        verify(Graph("g", [_node("a", "input", attrs={"name": "a"})], {}))


def test_verifier_rejects_missing_attributes_and_arity():
    g = _graph(_node("a", "input", attrs={"name": "a"}), _node("t", "transpose", ["a"], {}))
    with pytest.raises(VerifyError, match=r"node %t \(transpose\): missing required attribute 'perm'"):
        verify(g)
    g = _graph(_node("a", "input", attrs={"name": "a"}), _node("t", "scale", ["a", "a"], {"factor": 1.0}))
    with pytest.raises(VerifyError, match=r"node %t \(scale\): takes 1 operand\(s\) \(x\), got 2"):
        verify(g)


def test_fused_matmul_checks_its_epilogue_operands():
    b = GraphBuilder()
    x, w = b.input("x", (1, 4, 6, 8)), b.input("w", (8, 16))
    bias, coarse = b.input("b", (16,)), b.input("c", (1, 16, 2, 3))
    y = b.fused_matmul(x, w, bias, coarse, **legacy(bias=True, perm=(0, 3, 1, 2), upsample="nearest", factor=0.5))
    assert y.shape == (1, 16, 4, 6)
    with pytest.raises(VerifyError, match=r"its epilogue takes 1 operand\(s\) after a and b \(bias_add: bias\), got 2"):
        b.fused_matmul(x, w, bias, coarse, **legacy(bias=True))
    with pytest.raises(VerifyError, match=r"epilogue step 0 \(upsample_add\): operands must have the same rank"):
        b.fused_matmul(x, w, bias, **legacy(perm=(0, 3, 1, 2), upsample="nearest"))


def test_types_reject_bad_shapes():
    with pytest.raises(ValueError, match="positive integers"):
        TensorType((2, 0))
    with pytest.raises(ValueError, match="unknown element type"):
        TensorType((2,), "f8")
    assert str(TensorType((1, 256, 64, 64))) == "tensor<1x256x64x64xf32>"
    assert str(TensorType(())) == "tensor<f32>"


def test_print_shows_the_ir_and_repr_stays_short(capsys, rng):
    from rlxpy import print_graph
    b = GraphBuilder("shown")
    x = b.input("x", (2, 3))
    b.output("y", b.matmul(x, b.const(rng.standard_normal((3, 4)), name="w")))
    g = b.build()
    print(g)
    assert capsys.readouterr().out == print_graph(g) + "\n"
    assert str(g) == f"{g}" == print_graph(g)
    assert str(g).startswith("graph @shown {\n") and "%w = const @w : tensor<3x4xf32>" in str(g)
    assert repr(g) == "<Graph @shown: 3 nodes, outputs ['y']>"


def test_op_methods_show_operands_and_attributes():
    import inspect
    import pydoc
    from rlxpy.ir import OPS
    assert "upsample_add" in vars(GraphBuilder)                      # a real method of the class
    sig = inspect.signature(GraphBuilder.upsample_add)
    assert str(sig) == ("(self, x: rlxpy.ir.builder.Value, coarse: rlxpy.ir.builder.Value, /, *, "
                        "mode: Literal['nearest', 'bilinear'] = 'nearest', name: str | None = None) "
                        "-> rlxpy.ir.builder.Value")
    fused = inspect.signature(GraphBuilder.fused_matmul).parameters
    assert [(p.name, p.kind.name, p.default) for p in fused.values()][1:] == [
        ("a", "POSITIONAL_ONLY", inspect.Parameter.empty), ("b", "POSITIONAL_ONLY", inspect.Parameter.empty),
        ("extra", "VAR_POSITIONAL", inspect.Parameter.empty), ("perm", "KEYWORD_ONLY", ()),
        ("epilogue", "KEYWORD_ONLY", ()), ("name", "KEYWORD_ONLY", None)]
    assert inspect.signature(GraphBuilder.scale).parameters["factor"].default is inspect.Parameter.empty
    text = pydoc.render_doc(GraphBuilder, renderer=pydoc.plaintext)
    for name, op in OPS.items():
        if not op.is_source:
            assert f"{name}(self" in text, name
    assert "mode: str, one of 'nearest', 'bilinear', default 'nearest': nearest repeats" in text
    assert "factor: float; required: the multiplier" in text
    assert "axis: int (axis), default -1: " in text
    assert GraphBuilder.scale.__doc__.startswith(OPS["scale"].summary)


def test_an_op_declared_later_gets_a_method_too():
    import inspect
    from rlxpy.ir import OPS, Attr, OpDef
    from rlxpy.ir.ops import declare
    declare(OpDef("twice", "x scaled by 2, or by k.", operands=("x",),
                  attrs={"k": Attr("float", 2.0, doc="the factor")}, infer=lambda t, a: t[0]))
    try:
        b = GraphBuilder()
        y = b.twice(b.input("x", (2, 3)), k=3.0, name="y")
        assert y.shape == (2, 3) and b.nodes[-1].attrs == {"k": 3.0}
        assert str(inspect.signature(b.twice)) == ("(x: rlxpy.ir.builder.Value, /, *, k: float = 2.0, "
                                                   "name: str | None = None) -> rlxpy.ir.builder.Value")
        assert "k: float, default 2.0: the factor" in b.twice.__doc__ and "twice" in dir(b)
        with pytest.raises(VerifyError, match="unknown attribute 'j'"):
            b.twice(y, j=1)
    finally:
        del OPS["twice"]
