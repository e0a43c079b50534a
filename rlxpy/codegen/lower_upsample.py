"""upsample_add, and the 2x upsampling sampler that the fused matmul epilogue shares.

The sampler reads the coarse operand at output position (oh, ow) of the 2x grid. Bilinear uses
align_corners=False, which for an exact x2 is two taps per axis with weights 1/4 and 3/4 (borders
clamped), applied along rows first, then columns, in the interpreter's order of float32
operations, so the native result matches it bit for bit.
"""

from __future__ import annotations

import math

import llvmlite.ir as ir

from .emit import I1, FunctionBuilder, Int, KernelBuilder
from .registry import Kernel, lowering


def _taps(k: FunctionBuilder, o: Int, n: Int) -> tuple[tuple[Int, object], tuple[Int, object]]:
    """((index, weight), (index, weight)) of output coordinate `o` along an axis of `n` coarse cells.

    Output 2c samples 0.25*cell[c-1] + 0.75*cell[c]; output 2c+1 samples 0.75*cell[c] + 0.25*cell[c+1].
    """
    quarter, three = k.f32(0.25), k.f32(0.75)
    if isinstance(o, int) and isinstance(n, int):
        c = o // 2
        if o % 2 == 0:
            return (max(c - 1, 0), quarter), (c, three)
        return (c, three), (min(c + 1, n - 1), quarter)
    b = k.b
    c = k.div(o, 2)
    odd = b.trunc(k.i64(o), I1)
    first = b.select(odd, k.i64(c), k.i64(k.max(k.sub(c, 1), 0)))
    second = b.select(odd, k.i64(k.min(k.add(c, 1), k.sub(n, 1))), k.i64(c))
    return (first, b.select(odd, three, quarter)), (second, b.select(odd, quarter, three))


def sample_upsampled(k: FunctionBuilder, mode: str, coarse: ir.Value, base: Int, oh: Int, ow: Int,
                     hc: Int, wc: Int, row_stride: Int, col_stride: Int) -> ir.Value:
    """upsample2x(coarse)[oh, ow] for the coarse plane at element offset `base`."""
    if mode == "nearest":
        off = k.add(base, k.add(k.mul(k.div(oh, 2), row_stride), k.mul(k.div(ow, 2), col_stride)))
        return k.load(coarse, off)
    b = k.b
    (h0, a0), (h1, a1) = _taps(k, oh, hc)
    (w0, b0), (w1, b1) = _taps(k, ow, wc)

    def along_rows(col: Int) -> ir.Value:
        top = k.load(coarse, k.add(base, k.add(k.mul(h0, row_stride), k.mul(col, col_stride))))
        bottom = k.load(coarse, k.add(base, k.add(k.mul(h1, row_stride), k.mul(col, col_stride))))
        return b.fadd(b.fmul(a0, top), b.fmul(a1, bottom))

    return b.fadd(b.fmul(b0, along_rows(w0)), b.fmul(b1, along_rows(w1)))


@lowering("upsample_add")
def upsample_add(k: KernelBuilder) -> Kernel:
    shape = k.out_type.shape
    h, w = shape[-2:]
    hc, wc = h // 2, w // 2
    planes = math.prod(shape[:-2])
    mode = k.attrs["mode"]
    k.define(extent=planes * h)                          # rows of the output
    x, coarse = k.ins
    with k.parallel_loop() as q:
        plane, oh = k.div(q, h), k.rem(q, h)
        base = k.mul(plane, hc * wc)
        row = k.mul(q, w)
        with k.loop(0, w, name="ow") as ow:
            off = k.add(row, ow)
            up = sample_upsampled(k, mode, coarse, base, oh, ow, hc, wc, wc, 1)
            k.store(k.b.fadd(k.load(x, off), up), k.out, off)
    return k.finish(cost=w if mode == "nearest" else 6 * w)
