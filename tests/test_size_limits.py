"""The one size limit on tensor types (rank <= 64, bytes <= 2**62), with exact element counts: no
graph that verifies can make a kernel form an offset that overflows, and every way of writing an
over-limit type is a VerifyError naming the node."""

import math

import numpy as np
import pytest

import rlxpy
from rlxpy import GraphBuilder, TensorType, VerifyError
from rlxpy.codegen.runtime import ALIGNMENT, aligned_empty
from rlxpy.ir import Graph, Node, verify
from rlxpy.ir.types import MAX_BYTES, MAX_RANK, TypeLimitError

# 3 * K is 2**64 + 2: in int64 it wraps to 2, so a reshape of 2 elements to [3, K] looked legal
K = (2**64 + 2) // 3


def test_element_counts_are_exact_and_the_limit_is_one_place():
    at_limit = TensorType((2**30, 2**30))                              # 2**60 floats = 2**62 bytes
    assert (at_limit.numel, at_limit.nbytes) == (2**60, MAX_BYTES)
    with pytest.raises(TypeLimitError, match=r"tensor<1073741824x1073741825xf32> has 1152921505680588800 "
                                             r"elements \(4611686022722355200 bytes\), over the limit: a tensor "
                                             r"has at most 64 dimensions and 2\*\*62 bytes"):
        TensorType((2**30, 2**30 + 1))
    with pytest.raises(TypeLimitError, match=r"has 18446744073709551618 elements"):
        TensorType((3, K))
    assert TensorType((2**29, 2**30), "f64").nbytes == MAX_BYTES       # the byte size counts
    with pytest.raises(TypeLimitError):
        TensorType((2**30, 2**30), "f64")
    assert TensorType((1,) * MAX_RANK).rank == 64
    with pytest.raises(TypeLimitError, match=r"a tensor of rank 65 is over the limit"):
        TensorType((1,) * 65)
    with pytest.raises(TypeLimitError, match=r"rank 20000"):          # refused before looking at dims
        TensorType((0,) * 20000)


def test_the_wrapping_reshape_is_refused_before_any_kernel_exists():
    b = GraphBuilder("wrap")
    x = b.input("x", (2,))
    with pytest.raises(VerifyError, match=r"^new node \(reshape\): cannot reshape tensor<2xf32> \(2 elements\) "
                                          r"to \[3, 6148914691236517206\] \(18446744073709551618 elements\)$"):
        b.reshape(x, shape=(3, K))
    # a graph made by hand cannot carry the type either
    with pytest.raises(TypeLimitError):
        Node("r", "reshape", ("x",), {"shape": (3, K)}, TensorType((3, K)))


def test_sources_over_the_limit_name_the_node():
    b = GraphBuilder()
    with pytest.raises(VerifyError, match=r"^node %x \(input 'x'\): a tensor of rank 65 is over the limit: "
                                          r"a tensor has at most 64 dimensions and 2\*\*62 bytes$"):
        b.input("x", (1,) * 65)
    with pytest.raises(VerifyError, match=r"^node %0 \(param 'w'\): tensor<4611686018427387904x2xf32> has"):
        b.param("w", (2**62, 2))
    with pytest.raises(VerifyError, match=r"^node %big \(param 'w'\): tensor dimensions must be positive"):
        b.param("w", (2, 0), value_name="big")
    with pytest.raises(VerifyError, match=r"^node %e \(const\): tensor dimensions must be positive integers, "
                                          r"got \[0, 3\]"):
        b.const(np.zeros((0, 3)), name="e")
    with pytest.raises(VerifyError, match=r"the shape must be a sequence of positive integers, got 5"):
        b.input("y", 5)
    assert b.nodes == []


def test_attributes_that_make_a_type_too_large_are_verify_errors():
    b = GraphBuilder()
    x = b.input("x", (2, 3))
    with pytest.raises(VerifyError, match=r"^%r \(reshape\): attribute 'shape' has 65 dimensions: a tensor of "
                                          r"rank 65 is over the limit"):
        b.reshape(x, shape=(1,) * 63 + (2, 3), name="r")
    with pytest.raises(VerifyError, match=r"^new node \(pos_encoding\): attributes \{batch = 4611686018427387904, "
                                          r"dim = 4, height = 1, width = 1\} make a result too large: "
                                          r"tensor<4611686018427387904x4x1x1xf32> has 18446744073709551616 elements"):
        b.pos_encoding(batch=2**62, dim=4, height=1, width=1)
    # broadcasting two legal operands into an illegal product
    a, c = b.input("a", (2**31, 1, 1, 1)), b.input("c", (1, 2**31, 1, 1))
    with pytest.raises(VerifyError, match=r"^new node \(matmul\): the product of tensor<2147483648x1x1x1xf32> and "
                                          r"tensor<1x2147483648x1x1xf32>: tensor<2147483648x2147483648x1x1xf32> has"):
        b.matmul(a, c)


def test_the_verifier_applies_the_same_rules_to_graphs_made_by_hand():
    x = Node("x", "input", (), {"name": "x"}, TensorType((2, 3)))
    r = Node("r", "reshape", ("x",), {"shape": (1,) * 63 + (2, 3)}, TensorType((6,)))
    with pytest.raises(VerifyError, match=r"^node %r \(reshape\): attribute 'shape' has 65 dimensions"):
        verify(Graph("g", [x, r], {"y": "r"}))
    p = Node("p", "pos_encoding", (), {"batch": 2**62, "dim": 4, "height": 1, "width": 1, "temperature": 1e4},
             TensorType((1, 4, 1, 1)))
    with pytest.raises(VerifyError, match=r"^node %p \(pos_encoding\): attributes \{batch = 4611686018427387904"):
        verify(Graph("g", [p], {"y": "p"}))
    odd = Node("o", "input", (), {"name": "o"}, (2, 3))
    with pytest.raises(VerifyError, match=r"^node %o \(input\): its type is a tuple, expected a TensorType"):
        verify(Graph("g", [odd], {"y": "o"}))


def test_rank_64_is_usable_on_every_target(rng):
    """The limit is numpy's: a rank-64 graph runs on the interpreter and in native code."""
    lead = (1,) * 60 + (2,)
    b = GraphBuilder("deep")
    x = b.input("x", lead + (3, 4, 6))
    w = b.param("w", (6, 5))
    bias = rng.standard_normal(5).astype(np.float32)
    y = b.bias_add(b.matmul(x, w), b.const(bias))
    y = b.transpose(y, perm=tuple(range(60)) + (62, 60, 61, 63))
    b.output("y", b.scale(b.reshape(y, shape=(3, 2, 4, 5)), factor=0.5))
    graph = b.build()
    xv = rng.standard_normal(lead + (3, 4, 6)).astype(np.float32)
    wv = rng.standard_normal((6, 5)).astype(np.float32)
    want = (np.einsum("ijk,kl->ijl", xv.reshape(2, 12, 6).astype(np.float64), wv) + bias)
    want = 0.5 * want.reshape(2, 3, 4, 5).transpose(2, 0, 1, 3).reshape(3, 2, 4, 5)
    for target, options in (("interp", {}), ("llvm", {"cache": False})):
        got = rlxpy.compile(graph, params={"w": wv}, target=target, **options)(x=xv)["y"]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=target)


def test_aligned_buffers_have_exact_sizes():
    a = aligned_empty((3, 5, 7))
    assert a.shape == (3, 5, 7) and a.dtype == np.float32 and a.ctypes.data % ALIGNMENT == 0
    assert math.prod(a.shape) == a.size
