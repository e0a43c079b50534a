"""matmul and fused_matmul: one blocked GEMM loop nest with a configurable epilogue.

Rows of the result (every leading index and m, flattened) form the parallel loop. A block of
`ROWS` rows accumulates in a stack tile of ROWS x COLS floats (8 KiB, in L1): for each k, every
row of the block adds a[row, k] * b[k, :] to its tile row, so each chunk of b's row k is read from
L1 by all rows of the block while it is hot, and the innermost loop runs over contiguous columns,
which LLVM vectorises without any reassociation (each output is still summed in k order). The
accumulators start from the bias when there is one. The epilogue then writes each element where
the permutation puts it, adding the 2x-upsampled coarse operand and applying the factor.

This is the generic rule; a specialised micro-kernel can be registered in front of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .emit import F32, I64, KernelBuilder, row_major_strides
from .lower_upsample import sample_upsampled
from .registry import Kernel, lowering

ROWS = 8
COLS = 256


@dataclass(frozen=True)
class Epilogue:
    bias: bool = False
    perm: tuple[int, ...] = ()
    upsample: str = "none"
    factor: float = 1.0


def _batch_strides(shape: tuple[int, ...], lead: int) -> tuple[int, ...]:
    """Element strides of `shape`'s leading (batch) axes padded to `lead` axes; 0 where broadcast."""
    strides = row_major_strides(shape)[:-2]
    batch = shape[:-2]
    pad = lead - len(batch)
    return (0,) * pad + tuple(0 if d == 1 else s for d, s in zip(batch, strides))


def emit_gemm(k: KernelBuilder, epi: Epilogue) -> Kernel:
    a_t, b_t = k.in_types[0], k.in_types[1]
    m, kdim = a_t.shape[-2:]
    n = b_t.shape[-1]
    lead = max(a_t.rank, b_t.rank) - 2
    a_batch, b_batch = _batch_strides(a_t.shape, lead), _batch_strides(b_t.shape, lead)
    batch = tuple(max(x, y) for x, y in zip((1,) * (lead - a_t.rank + 2) + a_t.shape[:-2],
                                            (1,) * (lead - b_t.rank + 2) + b_t.shape[:-2]))
    y_shape = batch + (m, n)                              # the matmul's result, before the epilogue
    rank = len(y_shape)
    perm = epi.perm or tuple(range(rank))
    o_shape = tuple(y_shape[p] for p in perm)
    o_strides = row_major_strides(o_shape)
    write_strides = [0] * rank                            # output stride of each result axis
    for j, p in enumerate(perm):
        write_strides[p] = o_strides[j]
    cols = min(n, COLS)

    k.define(extent=math.prod(batch) * m)
    b = k.b
    a_ptr, b_ptr = k.ins[0], k.ins[1]
    rest = list(k.ins[2:])
    bias_ptr = rest.pop(0) if epi.bias else None
    coarse_ptr = rest.pop(0) if epi.upsample != "none" else None
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
                    if coarse_ptr is not None:
                        v = b.fadd(v, _upsampled(k, epi.upsample, coarse_ptr, y, perm, o_shape))
                    if epi.factor != 1.0:
                        v = b.fmul(v, k.f32(epi.factor))
                    k.store(v, k.out, k.dot(y, write_strides))

        if n <= COLS:
            tile(0, n)
        else:
            with k.loop(0, n, step=COLS, name="n0") as n0:
                tile(n0, k.min(COLS, k.sub(n, n0)))
    return k.finish(cost=2 * kdim * n)


def _upsampled(k: KernelBuilder, mode: str, coarse, y, perm, o_shape):
    """The coarse operand's upsampled value at the output position of result coordinates `y`."""
    o = [y[p] for p in perm]                              # output coordinates
    h, w = o_shape[-2:]
    c_shape = o_shape[:-2] + (h // 2, w // 2)
    c_strides = row_major_strides(c_shape)
    base = k.dot(o[:-2], c_strides[:-2])
    return sample_upsampled(k, mode, coarse, base, o[-2], o[-1], h // 2, w // 2, c_strides[-2], c_strides[-1])


@lowering("matmul")
def matmul(k: KernelBuilder) -> Kernel:
    return emit_gemm(k, Epilogue())


@lowering("fused_matmul")
def fused_matmul(k: KernelBuilder) -> Kernel:
    a = k.attrs
    return emit_gemm(k, Epilogue(bias=a["bias"], perm=a["perm"], upsample=a["upsample"], factor=a["factor"]))
