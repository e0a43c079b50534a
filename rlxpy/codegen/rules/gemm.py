"""The generic rule for matmul and fused_matmul: one blocked GEMM loop nest, any epilogue.

Rows of the result (every leading index and m, flattened) form the parallel loop. A block of
`ROWS` rows accumulates in a stack tile of ROWS x COLS floats (8 KiB, in L1): for each k, every
row of the block adds a[row, k] * b[k, :] to its tile row, so each chunk of b's row k is read from
L1 by all rows of the block while it is hot, and the innermost loop runs over contiguous columns,
which LLVM vectorises without any reassociation (each output is still summed in k order). When the
epilogue starts with a bias on the matmul's last axis the accumulators start from it. The
epilogue then writes each element where the permutation puts it, applying the rest of its steps
at the element's output coordinates.

This is the rule every matmul can take; specialised micro-kernels are tried before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...ir.graph import Graph, Node
from ..emit.builder import F32, I64, KernelBuilder, row_major_strides
from ..emit.epilogue import LoweredStep, View, apply_scalar, lower_steps
from ..isa import VectorISA
from ..rule import Rule, Spec

ROWS = 8
COLS = 256


@dataclass(frozen=True, kw_only=True)
class GemmSpec(Spec):
    a_shape: tuple[int, ...]
    b_shape: tuple[int, ...]
    perm: tuple[int, ...]
    bias_init: int                   # operand index of a leading bias on the matmul's last axis, or -1
    steps: tuple[LoweredStep, ...]


def _batch_strides(shape: tuple[int, ...], lead: int) -> tuple[int, ...]:
    """Element strides of `shape`'s leading (batch) axes padded to `lead` axes; 0 where broadcast."""
    strides = row_major_strides(shape)[:-2]
    batch = shape[:-2]
    pad = lead - len(batch)
    return (0,) * pad + tuple(0 if d == 1 else s for d, s in zip(batch, strides))


def _batch(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> tuple[int, ...]:
    lead = max(len(a_shape), len(b_shape)) - 2
    return tuple(max(x, y) for x, y in zip((1,) * (lead - len(a_shape) + 2) + a_shape[:-2],
                                            (1,) * (lead - len(b_shape) + 2) + b_shape[:-2]))


class Gemm(Rule):
    name = "gemm"
    ops = ("matmul", "fused_matmul")

    def match(self, node: Node, graph: Graph, target: VectorISA) -> GemmSpec:
        a_shape, b_shape = graph.type_of(node.operands[0]).shape, graph.type_of(node.operands[1]).shape
        perm = tuple(node.attrs.get("perm", ()))
        steps = lower_steps(node.attrs.get("epilogue", ()), node, graph, first=2)
        bias_init = -1
        stored_at = perm.index(len(perm) - 1) if perm else node.type.rank - 1
        if steps and steps[0].op == "bias_add" and steps[0].attributes["axis"] % node.type.rank == stored_at:
            bias_init, steps = steps[0].operands[0].index, steps[1:]
        m, kdim, n = a_shape[-2], a_shape[-1], b_shape[-1]
        return GemmSpec(extent=math.prod(_batch(a_shape, b_shape)) * m, cost=2 * kdim * n,
                        operands=len(node.operands), a_shape=a_shape, b_shape=b_shape, perm=perm,
                        bias_init=bias_init, steps=steps)

    def emit(self, spec: GemmSpec, k: KernelBuilder) -> None:
        _emit(spec, k)


def _emit(spec: GemmSpec, k: KernelBuilder) -> None:
    a_shape, b_shape = spec.a_shape, spec.b_shape
    m, kdim = a_shape[-2:]
    n = b_shape[-1]
    lead = max(len(a_shape), len(b_shape)) - 2
    a_batch, b_batch = _batch_strides(a_shape, lead), _batch_strides(b_shape, lead)
    batch = _batch(a_shape, b_shape)
    y_shape = batch + (m, n)                              # the matmul's result, before the permutation
    rank = len(y_shape)
    perm = spec.perm or tuple(range(rank))
    o_shape = tuple(y_shape[p] for p in perm)
    o_strides = row_major_strides(o_shape)
    write_strides = [0] * rank                            # output stride of each result axis
    for j, p in enumerate(perm):
        write_strides[p] = o_strides[j]
    cols = min(n, COLS)

    b = k.b
    a_ptr, b_ptr = k.ins[0], k.ins[1]
    bias_ptr = k.ins[spec.bias_init] if spec.bias_init >= 0 else None
    views = {o.index: View(k.ins[o.index], o.shape) for st in spec.steps for o in st.operands}
    acc = k.alloca(F32, ROWS * cols, "acc")
    a_rows = k.alloca(I64, ROWS, "a_row")                 # offset of each block row in a
    b_mats = k.alloca(I64, ROWS, "b_mat")                 # offset of its matrix in b

    def coords(r):                                        # (batch..., m) of result row r
        return k.unflatten(r, batch + (m,))

    with k.parallel_loop(step=ROWS, name="r0") as r0:
        rows = k.min(ROWS, k.sub(k.hi, r0))
        with k.loop(0, rows, name="i") as i:
            c = coords(k.add(r0, i))
            b.store(k.i64(k.add(k.dot(c[:-1], a_batch), k.mul(c[-1], kdim))), k.ptr(a_rows, i))
            b.store(k.i64(k.dot(c[:-1], b_batch)), k.ptr(b_mats, i))

        def tile(n0, width):
            with k.loop(0, rows, name="i") as i:         # start from the bias, or zero
                with k.loop(0, width, name="j") as j:
                    init = k.load(bias_ptr, k.add(n0, j)) if bias_ptr is not None else k.f32(0.0)
                    k.store(init, acc, k.add(k.mul(i, cols), j))
            with k.loop(0, kdim, name="kk") as kk:
                with k.loop(0, rows, name="i") as i:
                    av = k.load(a_ptr, k.add(b.load(k.ptr(a_rows, i)), kk))
                    b_row = k.add(b.load(k.ptr(b_mats, i)), k.add(k.mul(kk, n), n0))
                    acc_row = k.mul(i, cols)
                    with k.loop(0, width, name="j") as j:
                        slot = k.add(acc_row, j)
                        k.store(k.fmuladd(av, k.load(b_ptr, k.add(b_row, j)), k.load(acc, slot)), acc, slot)
            with k.loop(0, rows, name="i") as i:
                c = coords(k.add(r0, i))
                with k.loop(0, width, name="j") as j:
                    y = list(c) + [k.add(n0, j)]
                    v = k.load(acc, k.add(k.mul(i, cols), j))
                    v = apply_scalar(k, spec.steps, v, [y[p] for p in perm], views)
                    k.store(v, k.out, k.dot(y, write_strides))

        if n <= COLS:
            tile(0, n)
        else:
            with k.loop(0, n, step=COLS, name="n0") as n0:
                tile(n0, k.min(COLS, k.sub(n, n0)))
