"""The 2x upsampling sampler: a coarse plane read at positions of the fine (2x) grid, as one value
or as a vector of consecutive columns of one row.

Nearest reads cell (oh // 2, ow // 2). Bilinear uses align_corners=False, which for an exact x2 is
two taps per axis with weights 1/4 and 3/4 (borders clamped): output 2c samples 0.25*cell[c-1] +
0.75*cell[c], output 2c+1 samples 0.75*cell[c] + 0.25*cell[c+1]. Rows are mixed first, then
columns, in the interpreter's order of float32 operations, so the native result matches it bit
for bit. `taps` is the one definition of those weights and clamps, for both forms.
"""

from __future__ import annotations

from typing import Callable

import llvmlite.ir as ir

from .builder import F32, I1, FunctionBuilder, Int
from .simd import constant_vector, shuffle, splat, vload

Tap = tuple[Int, ir.Value]            # (coarse index, weight)


def taps(k: FunctionBuilder, o: Int, n: Int) -> tuple[Tap, Tap]:
    """The two bilinear taps of fine coordinate `o` along an axis of `n` coarse cells."""
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


def sample(k: FunctionBuilder, mode: str, coarse: ir.Value, base: Int, oh: Int, ow: Int,
           hc: Int, wc: Int, row_stride: Int, col_stride: Int) -> ir.Value:
    """upsample2x(coarse)[oh, ow] for the coarse plane at element offset `base`."""
    if mode == "nearest":
        off = k.add(base, k.add(k.mul(k.div(oh, 2), row_stride), k.mul(k.div(ow, 2), col_stride)))
        return k.load(coarse, off)
    b = k.b
    (h0, a0), (h1, a1) = taps(k, oh, hc)
    (w0, b0), (w1, b1) = taps(k, ow, wc)

    def along_rows(col: Int) -> ir.Value:
        top = k.load(coarse, k.add(base, k.add(k.mul(h0, row_stride), k.mul(col, col_stride))))
        bottom = k.load(coarse, k.add(base, k.add(k.mul(h1, row_stride), k.mul(col, col_stride))))
        return b.fadd(b.fmul(a0, top), b.fmul(a1, bottom))

    return b.fadd(b.fmul(b0, along_rows(w0)), b.fmul(b1, along_rows(w1)))


def vector_sampler(k: FunctionBuilder, mode: str, coarse: ir.Value, oh: Int, ow: Int, hc: Int, wc: Int,
                   lanes: int) -> Callable[[Int], ir.Value]:
    """read(base): upsample2x(coarse)[oh, ow .. ow + lanes - 1] for the coarse plane at `base` (a
    contiguous [hc, wc] plane), as one vector; `ow` even, the whole run within the row. The
    per-position work (taps, offsets) is emitted here, once; `read` emits only the loads and mixes.
    """
    b = k.b
    half = lanes // 2
    pairs = [i // 2 for i in range(lanes)]                 # [0, 0, 1, 1, ...]
    if mode == "nearest":
        offset = k.add(k.mul(k.div(oh, 2), wc), k.div(ow, 2))

        def nearest(base: Int) -> ir.Value:
            return shuffle(k, vload(k, coarse, k.add(base, offset), half), None, pairs)
        return nearest

    (h0, a0), (h1, a1) = taps(k, oh, hc)
    j0 = k.div(ow, 2)
    left = k.max(k.sub(j0, 1), 0)                          # the clamped neighbours of the run
    right = k.min(k.add(j0, half), k.sub(wc, 1))
    r0, r1 = k.mul(h0, wc), k.mul(h1, wc)
    a0v, a1v = splat(k, a0, half), splat(k, a1, half)
    w_first = constant_vector([0.25 if i % 2 == 0 else 0.75 for i in range(lanes)])
    w_second = constant_vector([0.75 if i % 2 == 0 else 0.25 for i in range(lanes)])
    # first[2i] = tmp[j0 + i - 1], first[2i + 1] = tmp[j0 + i]; second[2i] = tmp[j0 + i],
    # second[2i + 1] = tmp[j0 + i + 1]; `ext` = [tmp[j0 - 1], tmp[j0 .. j0 + half - 1], tmp[j0 + half]]
    first_idx = [(i // 2) + (i % 2) for i in range(lanes)]
    second_idx = [(i // 2) + 1 + (i % 2) for i in range(lanes)]

    def bilinear(base: Int) -> ir.Value:
        top = vload(k, coarse, k.add(base, k.add(r0, j0)), half)
        bottom = vload(k, coarse, k.add(base, k.add(r1, j0)), half)
        mid = b.fadd(b.fmul(a0v, top), b.fmul(a1v, bottom))

        def one(col: Int) -> ir.Value:
            t = k.load(coarse, k.add(base, k.add(r0, col)))
            u = k.load(coarse, k.add(base, k.add(r1, col)))
            return b.fadd(b.fmul(a0, t), b.fmul(a1, u))
        ends = ir.Constant(ir.VectorType(F32, 2), ir.Undefined)
        ends = b.insert_element(ends, one(left), ir.Constant(ir.IntType(32), 0))
        ends = b.insert_element(ends, one(right), ir.Constant(ir.IntType(32), 1))
        # ext = [left, mid..., right] as one vector of half + 2 lanes (padded to lanes when wider)
        wide_mid = shuffle(k, mid, None, list(range(half)) + [half] * half)
        wide_ends = shuffle(k, ends, None, [0, 1] + [2] * (lanes - 2))
        ext = shuffle(k, wide_mid, wide_ends, [lanes] + list(range(half)) + [lanes + 1] + [lanes + 2] * (lanes - half - 2))
        first = shuffle(k, ext, None, first_idx)
        second = shuffle(k, ext, None, second_idx)
        return b.fadd(b.fmul(w_first, first), b.fmul(w_second, second))
    return bilinear
