"""The fast rule for `fused_matmul`: a 1x1 convolution from channels-last input to NCHW output.

    out[b, c, y, x] = factor * (bias[c] + sum_k a[b, y, x, k] * w[k, c] + up(coarse)[b, c, y, x])

Shapes this rule takes: `a` [B, H, W, K] channels-last, `w` a compile-time constant [K, N], perm
(0, 3, 1, 2), optional bias, optional nearest or bilinear 2x upsample-add of a coarse NCHW operand,
any factor. Anything else is declined with the reason (the generic rule then runs, and the
executable's report shows why).

The parallel loop runs over tiles of `width` consecutive pixels of one image (B * ceil(H*W /
width) of them). For each tile: its pixels are packed into a [K][width] panel, then every panel of
channels runs the register tile over it (see `microkernel`), whose accumulators start from the
bias; the epilogue adds the upsampled coarse operand, applies the factor and stores each channel's
vectors straight into its NCHW plane: with streaming (non-temporal) stores when the output is
large and aligned, since nothing reads it soon. While a tile computes, the next tile's input rows
are prefetched, one cache line per k iteration. A tile that is not full (the last of an image) or
whose vectors are not each within one image row (width W not a multiple of the vector) takes the
scalar epilogue: it spills the tile and walks its valid pixels one by one.
"""

from __future__ import annotations

import llvmlite.ir as ir

from .emit import F32, Int, KernelBuilder
from .isa import host_isa
from .lower_upsample import sample_upsampled
from .microkernel import (TileShape, bias_vectors, choose_tile, loop_iterations, pack_pixels, pack_weights,
                          panel_floats, register_tile, tile_count)
from .registry import Kernel, Unsupported, lowering
from .simd import constant_vector, prefetch, shuffle, splat, vload, vstore

NHWC_TO_NCHW = (0, 3, 1, 2)
# The pixel panel lives on the kernel's stack; beyond this the generic rule runs. The SAM 2 necks
# need at most 288 KiB (K = 1152); the limit stays far below a thread's stack (8 MiB with glibc,
# 1 MiB or less elsewhere), and a panel this large no longer fits in L2 anyway.
MAX_PANEL_BYTES = 512 << 10
# Outputs at least this large bypass the caches (see `emit`); smaller ones stay in L2 for whoever
# reads them next.
STREAMING_MIN_BYTES = 2 << 20


def check(k: KernelBuilder, shape: TileShape):
    """The weights, or Unsupported(why) when this rule does not apply."""
    attrs = k.attrs
    a_t, w_t = k.in_types[0], k.in_types[1]
    if attrs["perm"] != NHWC_TO_NCHW:
        raise Unsupported(f"perm {list(attrs['perm']) or 'none'}: this rule writes channels-last input "
                          f"to NCHW, perm [0, 3, 1, 2]")
    if a_t.rank != 4:
        raise Unsupported(f"a is {a_t}: expected [batch, height, width, K]")
    w = k.operand_value(1)
    if w is None:
        raise Unsupported("b is not a compile-time constant (the weights are packed at compile time)")
    if w_t.rank != 2:
        raise Unsupported(f"b is {w_t}: expected a [K, N] matrix")
    kdim = a_t.shape[-1]
    if 4 * panel_floats(kdim, shape) > MAX_PANEL_BYTES:
        raise Unsupported(f"K = {kdim} needs a {4 * panel_floats(kdim, shape) >> 10} KiB pixel panel; "
                          f"this rule's limit is {MAX_PANEL_BYTES >> 10} KiB")
    return w


@lowering("fused_matmul", priority=10, name="nchw_microkernel")
def fused_matmul_nchw(k: KernelBuilder) -> Kernel:
    shape = choose_tile(host_isa(), k.in_types[1].shape[-1])
    w = check(k, shape)
    return emit(k, w, shape)


def emit(k: KernelBuilder, w, shape: TileShape) -> Kernel:
    attrs = k.attrs
    batch, height, width_px, kdim = k.in_types[0].shape
    n = k.in_types[1].shape[-1]
    hw = height * width_px
    lanes, vecs, tw = shape.lanes, shape.vecs, shape.width
    rows = shape.rows
    full_blocks, rest = divmod(n, rows)
    # When rows does not divide N, the last block recomputes a few channels of the block before it
    # (the same sums, so the same values) instead of a remainder tile of its own: one register tile
    # of code per kernel, for at most rows - 1 extra channels of work.
    overlap = bool(rest) and full_blocks > 0
    if overlap:
        full_blocks, rest = full_blocks + 1, 0
    mode = attrs["upsample"]
    factor = float(attrs["factor"])
    tiles = tile_count(hw, shape)
    vector_epilogue = mode == "none" or width_px % lanes == 0
    always_full = hw % tw == 0

    packed = pack_weights(w.reshape(kdim, n), rows, overlap)
    k.define(extent=batch * tiles, constants=[packed])
    b = k.b
    x = k.ins[0]
    extra = list(k.ins[2:])
    bias = extra.pop(0) if attrs["bias"] else None
    coarse = extra.pop(0) if mode != "none" else None
    wpack = k.consts[0]
    panel = k.alloca(F32, panel_floats(kdim, shape), "panel")
    spill = k.alloca(F32, rows * tw, "spill") if not (vector_epilogue and always_full) else None
    hc, wc = height // 2, width_px // 2
    # Large outputs are written with streaming stores (no read for ownership, no eviction of the
    # panels); they need every vector aligned to its size, which holds when the output array is
    # and each plane starts on a vector boundary: the array's address is checked on every call.
    aligned = None
    if hw % lanes == 0 and 4 * k.out_type.numel >= STREAMING_MIN_BYTES:
        address = b.ptrtoint(k.out, ir.IntType(64))
        aligned = b.icmp_unsigned("==", b.and_(address, k.i64(lanes * 4 - 1)), k.i64(0))

    with k.parallel_loop(name="t") as t:
        img = k.div(t, tiles)
        p0 = k.mul(k.rem(t, tiles), tw)
        x_img = k.mul(img, hw)                              # first pixel of this image in a
        plane0 = k.mul(img, n)                              # first channel plane of this image

        def pack(full: bool) -> None:
            with k.loop(0, vecs, name="g") as g:
                if full:
                    offs = [k.mul(k.add(x_img, k.add(p0, k.mul(g, lanes))), kdim)]
                else:                                       # clamp to the image's last pixel
                    offs = [k.mul(k.add(x_img, k.min(k.add(p0, k.add(k.mul(g, lanes), j)), hw - 1)), kdim)
                            for j in range(lanes)]
                pack_pixels(k, x, offs, kdim, panel, k.mul(g, lanes), tw, lanes, consecutive=full)

        if always_full:
            pack(True)
        else:
            is_full = b.icmp_signed("<=", k.i64(k.add(p0, tw)), k.i64(hw))
            with b.if_else(is_full) as (then, otherwise):
                with then:
                    pack(True)
                with otherwise:
                    pack(False)
        up = _vector_upsampler(k, mode, coarse, p0, width_px, hc, wc, shape) if vector_epilogue else None

        def block(channel0: Int, nrows: int, weights_at: Int, fetch=None) -> None:
            init = bias_vectors(k, bias, channel0, nrows, shape)
            acc = register_tile(
                k, kdim, shape, nrows, init,
                scalar=lambda kk, r: k.load(wpack, k.add(weights_at, k.add(k.mul(kk, nrows), r))),
                vector=lambda kk, v: vload(k, panel, k.add(k.mul(kk, tw), v * lanes), lanes, align=lanes * 4),
                each_iteration=fetch)

            def vector_store() -> None:
                stores = []
                for r in range(nrows):
                    plane = k.add(plane0, k.add(channel0, r))
                    for v in range(vecs):
                        val = acc[r][v]
                        if up is not None:
                            val = b.fadd(val, up(plane, v))
                        if factor != 1.0:
                            val = b.fmul(val, constant_vector([factor] * lanes))
                        stores.append((val, k.add(k.mul(plane, hw), k.add(p0, v * lanes))))
                if aligned is None:
                    for val, at in stores:
                        vstore(k, val, k.out, at)
                    return
                with b.if_else(aligned) as (then, otherwise):
                    with then:
                        for val, at in stores:
                            vstore(k, val, k.out, at, align=lanes * 4, streaming=True)
                    with otherwise:
                        for val, at in stores:
                            vstore(k, val, k.out, at)

            def scalar_store() -> None:
                for r in range(nrows):
                    for v in range(vecs):
                        vstore(k, acc[r][v], spill, r * tw + v * lanes, align=lanes * 4)
                count = k.min(tw, k.sub(hw, p0))
                with k.loop(0, nrows, name="r") as r:
                    plane = k.add(plane0, k.add(channel0, r))
                    with k.loop(0, count, name="j") as j:
                        p = k.add(p0, j)
                        val = k.load(spill, k.add(k.mul(r, tw), j))
                        if coarse is not None:
                            val = b.fadd(val, sample_upsampled(k, mode, coarse, k.mul(plane, hc * wc),
                                                               k.div(p, width_px), k.rem(p, width_px),
                                                               hc, wc, wc, 1))
                        if factor != 1.0:
                            val = b.fmul(val, k.f32(factor))
                        k.store(val, k.out, k.add(k.mul(plane, hw), p))

            if not vector_epilogue:
                scalar_store()
            elif always_full:
                vector_store()
            else:
                with b.if_else(b.icmp_signed("<=", k.i64(k.add(p0, tw)), k.i64(hw))) as (then, otherwise):
                    with then:
                        vector_store()
                    with otherwise:
                        scalar_store()

        # The next tile's input rows (tw * K floats from the next pixel on) are prefetched while
        # this tile computes, a slice per channel panel, one line per k iteration (a burst of
        # prefetches would take the fill buffers the streaming stores need), so they are in cache
        # when the next pack reads them.
        last = batch * hw * kdim - 1
        next_rows = k.mul(k.add(k.add(x_img, p0), tw), kdim)
        lines = -(-tw * kdim // 16)
        per_block = -(-lines // max(full_blocks, 1))
        spread = per_block <= loop_iterations(kdim)
        if full_blocks:
            with k.loop(0, full_blocks, name="blk") as blk:
                first_line = k.add(next_rows, k.mul(k.mul(blk, per_block), 16))
                for i in range(0 if spread else per_block):
                    prefetch(k, x, k.min(k.add(first_line, 16 * i), last))

                def fetch(i: ir.Value) -> None:
                    line = k.b.select(k.b.icmp_unsigned("<", i, k.i64(per_block)), i, k.i64(0))
                    prefetch(k, x, k.min(k.add(first_line, k.mul(line, 16)), last))
                channel0 = k.min(k.mul(blk, rows), n - rows) if overlap else k.mul(blk, rows)
                block(channel0, rows, k.mul(blk, kdim * rows), fetch if spread else None)
        if rest:
            block(full_blocks * rows, rest, full_blocks * kdim * rows)
    return k.finish(cost=2 * kdim * n * tw)


def _vector_upsampler(k: KernelBuilder, mode: str, coarse: ir.Value | None, p0: Int, width_px: int,
                      hc: int, wc: int, shape: TileShape):
    """up(plane, v): the upsampled coarse values of vector v of this tile in output plane `plane`,
    or None. Valid when every vector lies within one image row at an even column (W % lanes == 0)."""
    if mode == "none":
        return None
    lanes, b = shape.lanes, k.b
    half = lanes // 2
    pairs = [i // 2 for i in range(lanes)]                 # [0, 0, 1, 1, ...]
    where = []
    for v in range(shape.vecs):                            # per vector: row and first column
        p = k.add(p0, v * lanes)
        where.append((k.div(p, width_px), k.rem(p, width_px)))

    if mode == "nearest":
        offsets = [k.add(k.mul(k.div(y, 2), wc), k.div(x, 2)) for y, x in where]

        def nearest(plane: Int, v: int) -> ir.Value:
            coarse_half = vload(k, coarse, k.add(k.mul(plane, hc * wc), offsets[v]), half)
            return shuffle(k, coarse_half, None, pairs)
        return nearest

    # bilinear, align_corners=False, exact x2: per output row two coarse rows (weights a0, a1), per
    # output column two coarse columns (1/4, 3/4 alternating); rows first, as the interpreter does
    quarter, three = k.f32(0.25), k.f32(0.75)
    taps = []
    for y, x in where:
        c = k.div(y, 2)
        odd = b.trunc(k.i64(y), ir.IntType(1))
        h0 = b.select(odd, k.i64(c), k.i64(k.max(k.sub(c, 1), 0)))
        h1 = b.select(odd, k.i64(k.min(k.add(c, 1), hc - 1)), k.i64(c))
        a0 = b.select(odd, three, quarter)
        a1 = b.select(odd, quarter, three)
        j0 = k.div(x, 2)
        left = k.max(k.sub(j0, 1), 0)
        right = k.min(k.add(j0, half), wc - 1)
        taps.append((k.mul(h0, wc), k.mul(h1, wc), splat(k, a0, half), splat(k, a1, half), a0, a1, j0, left, right))
    w_first = constant_vector([0.25 if i % 2 == 0 else 0.75 for i in range(lanes)])
    w_second = constant_vector([0.75 if i % 2 == 0 else 0.25 for i in range(lanes)])
    # first[2i] = tmp[j0 + i - 1], first[2i + 1] = tmp[j0 + i]; second[2i] = tmp[j0 + i],
    # second[2i + 1] = tmp[j0 + i + 1]; `ext` = [tmp[j0 - 1], tmp[j0 .. j0 + half - 1], tmp[j0 + half]]
    first_idx = [(i // 2) + (i % 2) for i in range(lanes)]
    second_idx = [(i // 2) + 1 + (i % 2) for i in range(lanes)]

    def bilinear(plane: Int, v: int) -> ir.Value:
        r0, r1, a0v, a1v, a0, a1, j0, left, right = taps[v]
        base = k.mul(plane, hc * wc)
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
