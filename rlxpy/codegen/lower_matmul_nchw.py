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

Code size. The kernel of a node only allocates its pixel panel and calls a body that takes the
shapes (K, H, W; the batch only bounds the parallel range) as arguments and is specialised on the
rest (`Variant`: tile shape, N, epilogue, which remainders can occur): nodes of one module that
differ only in shapes, such as the neck's levels, share it, and a shared body costs LLVM one
compile. What the shapes no longer fold (divisions by the tile count and width once per tile, a
few multiplies per store row) is noise beside a tile's K x N x width multiply-adds. When the
register tile's rows do not divide N the last channel block overlaps the one before (see
`Variant.blocks`) rather than adding a remainder tile.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import llvmlite.ir as ir

from .emit import F32, FLOAT_PTR, I1, I64, FunctionBuilder, Int, KernelBuilder
from .isa import host_isa
from .lower_upsample import sample_upsampled
from .microkernel import (UNROLL, TileShape, bias_vectors, choose_tile, loop_iterations, pack_pixels,
                          pack_weights, panel_floats, register_tile, tile_count)
from .registry import Kernel, Unsupported, lowering
from .simd import constant_vector, prefetch, shuffle, splat, vload, vstore

NHWC_TO_NCHW = (0, 3, 1, 2)
# The pixel panel lives on the kernel's stack; beyond this the generic rule runs. The SAM 2 necks
# need at most 288 KiB (K = 1152); the limit stays far below a thread's stack (8 MiB with glibc,
# 1 MiB or less elsewhere), and a panel this large no longer fits in L2 anyway.
MAX_PANEL_BYTES = 512 << 10
# Outputs at least this large bypass the caches (see the rule); smaller ones stay in L2 for whoever
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


@dataclass(frozen=True)
class Variant:
    """What a kernel body is specialised on. The shapes (K, H, W) are its arguments, so
    nodes that differ only in them (the neck's levels) share one body in the module."""

    shape: TileShape
    n: int                         # output channels
    mode: str                      # upsample: none, nearest, bilinear
    bias: bool
    factor: float
    vector_epilogue: bool          # no upsample, or W % lanes == 0: each vector within one image row
    always_full: bool              # H*W % tile width == 0: no partial tiles
    streaming: bool                # H*W % lanes == 0: aligned vectors, streaming stores allowed
    k_rest: bool                   # K % UNROLL may be nonzero
    k_lanes_rest: bool             # K % lanes may be nonzero
    spread: bool                   # prefetches spread over the k loop (else a burst per block)

    @property
    def name(self) -> str:
        s = self.shape
        flags = "".join(c for c, on in zip("vfsrlp", (self.vector_epilogue, self.always_full, self.streaming,
                                                      self.k_rest, self.k_lanes_rest, self.spread)) if on)
        return (f"rlx.nchw_body.{s.rows}x{s.vecs}x{s.lanes}.n{self.n}.{self.mode}"
                f"{'.bias' if self.bias else ''}.f{self.factor.hex()}.{flags or '-'}")

    @property
    def blocks(self) -> tuple[int, int, bool]:
        """(register-tile blocks of `rows` channels, channels of a remainder tile, overlap).

        When rows does not divide N, the last block recomputes a few channels of the block before
        it (the same sums, so the same values) instead of a remainder tile of its own: one register
        tile of code, for at most rows - 1 extra channels of work."""
        full, rest = divmod(self.n, self.shape.rows)
        if rest and full:
            return full + 1, 0, True
        return full, rest, False

    def params(self) -> list[tuple[str, ir.Type]]:
        pointers = ["out", "x", "wpack"] + (["bias"] if self.bias else []) + \
            (["coarse"] if self.mode != "none" else []) + ["panel"]
        return ([(p, FLOAT_PTR) for p in pointers] + [(i, I64) for i in ("lo", "hi", "K", "H", "W")]
                + ([("stream", I1)] if self.streaming else []))


def _prefetch_per_block(kdim: int, shape: TileShape, blocks: int) -> int:
    """Cache lines of the next tile's input each channel block prefetches."""
    lines = -(-shape.width * kdim // 16)
    return -(-lines // max(blocks, 1))


@lowering("fused_matmul", priority=10, name="nchw_microkernel")
def fused_matmul_nchw(k: KernelBuilder) -> Kernel:
    attrs = k.attrs
    shape = choose_tile(host_isa(), k.in_types[1].shape[-1])
    w = check(k, shape)
    batch, height, width_px, kdim = k.in_types[0].shape
    n = k.in_types[1].shape[-1]
    hw = height * width_px
    lanes = shape.lanes
    v = Variant(shape, n, attrs["upsample"], attrs["bias"], float(attrs["factor"]),
                vector_epilogue=attrs["upsample"] == "none" or width_px % lanes == 0,
                always_full=hw % shape.width == 0, streaming=hw % lanes == 0,
                k_rest=kdim % UNROLL != 0, k_lanes_rest=kdim % lanes != 0, spread=False)
    blocks, _, overlap = v.blocks
    v = replace(v, spread=_prefetch_per_block(kdim, shape, blocks) <= loop_iterations(kdim))
    packed = pack_weights(w.reshape(kdim, n), shape.rows, overlap)
    k.define(extent=batch * tile_count(hw, shape), constants=[packed])

    body = k.shared_function(v.name, v.params(), lambda f: _emit_body(f, v))
    b = k.b
    # the pixel panel lives in this kernel's frame, sized for its K
    panel = k.alloca(F32, panel_floats(kdim, shape), "panel")
    args = [k.out, k.ins[0], k.consts[0]] + list(k.ins[2:]) + [panel]
    args += [k.i64(a) for a in (k.lo, k.hi, kdim, height, width_px)]
    if v.streaming:
        # Large outputs are written with streaming stores (no read for ownership, no eviction of
        # the panels); they need every vector aligned to its size, which holds when the output
        # array is (planes start on a vector boundary: H*W % lanes == 0); checked on every call.
        if 4 * k.out_type.numel >= STREAMING_MIN_BYTES:
            address = b.ptrtoint(k.out, I64)
            args.append(b.icmp_unsigned("==", b.and_(address, k.i64(lanes * 4 - 1)), k.i64(0)))
        else:
            args.append(ir.Constant(I1, 0))
    b.call(body, args)
    return k.finish(cost=2 * kdim * n * shape.width)


def _emit_body(f: FunctionBuilder, v: Variant) -> None:
    """for t in [lo, hi): pack tile t's pixels, then every channel block's register tile and
    epilogue. Depends only on `v` (it is shared by every kernel of that variant)."""
    a = {arg.name: arg for arg in f.fn.args}
    b = f.b
    shape = v.shape
    lanes, vecs, tw, rows = shape.lanes, shape.vecs, shape.width, shape.rows
    blocks, rest, overlap = v.blocks
    n, mode, factor = v.n, v.mode, v.factor
    kdim, height, width_px = a["K"], a["H"], a["W"]
    x, wpack, panel, out = a["x"], a["wpack"], a["panel"], a["out"]
    bias, coarse = a.get("bias"), a.get("coarse")
    hw = f.mul(height, width_px)
    tiles = f.ceil_div(hw, tw)
    hc, wc = f.div(height, 2), f.div(width_px, 2)
    spill = f.alloca(F32, rows * tw, "spill") if not (v.vector_epilogue and v.always_full) else None

    with f.loop(a["lo"], a["hi"], name="t") as t:
        img = f.div(t, tiles)
        p0 = f.mul(f.rem(t, tiles), tw)
        x_img = f.mul(img, hw)                              # first pixel of this image in x
        plane0 = f.mul(img, n)                              # first channel plane of this image

        def pack(full: bool) -> None:
            with f.loop(0, vecs, name="g") as g:
                if full:
                    offs = [f.mul(f.add(x_img, f.add(p0, f.mul(g, lanes))), kdim)]
                else:                                       # clamp to the image's last pixel
                    offs = [f.mul(f.add(x_img, f.min(f.add(p0, f.add(f.mul(g, lanes), j)), f.sub(hw, 1))), kdim)
                            for j in range(lanes)]
                pack_pixels(f, x, offs, kdim, panel, f.mul(g, lanes), tw, lanes, consecutive=full,
                            leftover=v.k_lanes_rest)

        if v.always_full:
            pack(True)
        else:
            is_full = b.icmp_signed("<=", f.i64(f.add(p0, tw)), f.i64(hw))
            with b.if_else(is_full) as (then, otherwise):
                with then:
                    pack(True)
                with otherwise:
                    pack(False)
        up = _vector_upsampler(f, mode, coarse, p0, width_px, hc, wc, shape) if v.vector_epilogue else None

        def block(channel0: Int, nrows: int, weights_at: Int, fetch=None) -> None:
            init = bias_vectors(f, bias, channel0, nrows, shape)
            acc = register_tile(
                f, kdim, shape, nrows, init,
                scalar=lambda kk, r: f.load(wpack, f.add(weights_at, f.add(f.mul(kk, nrows), r))),
                vector=lambda kk, i: vload(f, panel, f.add(f.mul(kk, tw), i * lanes), lanes, align=lanes * 4),
                each_iteration=fetch, remainder=v.k_rest)

            def vector_store() -> None:
                stores = []
                for r in range(nrows):
                    plane = f.add(plane0, f.add(channel0, r))
                    for i in range(vecs):
                        val = acc[r][i]
                        if up is not None:
                            val = b.fadd(val, up(plane, i))
                        if factor != 1.0:
                            val = b.fmul(val, constant_vector([factor] * lanes))
                        stores.append((val, f.add(f.mul(plane, hw), f.add(p0, i * lanes))))
                if not v.streaming:
                    for val, at in stores:
                        vstore(f, val, out, at)
                    return
                with b.if_else(a["stream"]) as (then, otherwise):
                    with then:
                        for val, at in stores:
                            vstore(f, val, out, at, align=lanes * 4, streaming=True)
                    with otherwise:
                        for val, at in stores:
                            vstore(f, val, out, at)

            def scalar_store() -> None:
                for r in range(nrows):
                    for i in range(vecs):
                        vstore(f, acc[r][i], spill, r * tw + i * lanes, align=lanes * 4)
                count = f.min(tw, f.sub(hw, p0))
                with f.loop(0, nrows, name="r") as r:
                    plane = f.add(plane0, f.add(channel0, r))
                    with f.loop(0, count, name="j") as j:
                        p = f.add(p0, j)
                        val = f.load(spill, f.add(f.mul(r, tw), j))
                        if coarse is not None:
                            val = b.fadd(val, sample_upsampled(f, mode, coarse, f.mul(plane, f.mul(hc, wc)),
                                                               f.div(p, width_px), f.rem(p, width_px),
                                                               hc, wc, wc, 1))
                        if factor != 1.0:
                            val = b.fmul(val, f.f32(factor))
                        f.store(val, out, f.add(f.mul(plane, hw), p))

            if not v.vector_epilogue:
                scalar_store()
            elif v.always_full:
                vector_store()
            else:
                with b.if_else(b.icmp_signed("<=", f.i64(f.add(p0, tw)), f.i64(hw))) as (then, otherwise):
                    with then:
                        vector_store()
                    with otherwise:
                        scalar_store()

        # The next tile's input rows (tw * K floats from the next pixel on) are prefetched while
        # this tile computes, a slice per channel block, one line per k iteration (a burst of
        # prefetches would take the fill buffers the streaming stores need), so they are in cache
        # when the next pack reads them. Past the last tile that points beyond x: harmless for a
        # prefetch, and cheaper than clamping every address in the k loop.
        next_rows = f.mul(f.add(f.add(x_img, p0), tw), kdim)
        per_block = f.ceil_div(f.ceil_div(f.mul(tw, kdim), 16), max(blocks, 1))
        if blocks:
            with f.loop(0, blocks, name="blk") as blk:
                first_line = f.add(next_rows, f.mul(f.mul(blk, per_block), 16))
                if not v.spread:
                    with f.loop(0, per_block, name="pf") as i:
                        prefetch(f, x, f.add(first_line, f.mul(i, 16)))

                def fetch(i: ir.Value) -> None:
                    line = b.select(b.icmp_unsigned("<", i, f.i64(per_block)), i, f.i64(0))
                    prefetch(f, x, f.add(first_line, f.mul(line, 16)))
                channel0 = f.min(f.mul(blk, rows), n - rows) if overlap else f.mul(blk, rows)
                block(channel0, rows, f.mul(blk, f.mul(kdim, rows)), fetch if v.spread else None)
        if rest:
            block(blocks * rows, rest, f.mul(blocks * rows, kdim))


def _vector_upsampler(k: FunctionBuilder, mode: str, coarse: ir.Value | None, p0: Int, width_px: Int,
                      hc: Int, wc: Int, shape: TileShape):
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
            coarse_half = vload(k, coarse, k.add(k.mul(plane, k.mul(hc, wc)), offsets[v]), half)
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
        h1 = b.select(odd, k.i64(k.min(k.add(c, 1), k.sub(hc, 1))), k.i64(c))
        a0 = b.select(odd, three, quarter)
        a1 = b.select(odd, quarter, three)
        j0 = k.div(x, 2)
        left = k.max(k.sub(j0, 1), 0)
        right = k.min(k.add(j0, half), k.sub(wc, 1))
        taps.append((k.mul(h0, wc), k.mul(h1, wc), splat(k, a0, half), splat(k, a1, half), a0, a1, j0, left, right))
    w_first = constant_vector([0.25 if i % 2 == 0 else 0.75 for i in range(lanes)])
    w_second = constant_vector([0.75 if i % 2 == 0 else 0.25 for i in range(lanes)])
    # first[2i] = tmp[j0 + i - 1], first[2i + 1] = tmp[j0 + i]; second[2i] = tmp[j0 + i],
    # second[2i + 1] = tmp[j0 + i + 1]; `ext` = [tmp[j0 - 1], tmp[j0 .. j0 + half - 1], tmp[j0 + half]]
    first_idx = [(i // 2) + (i % 2) for i in range(lanes)]
    second_idx = [(i // 2) + 1 + (i % 2) for i in range(lanes)]

    def bilinear(plane: Int, v: int) -> ir.Value:
        r0, r1, a0v, a1v, a0, a1, j0, left, right = taps[v]
        base = k.mul(plane, k.mul(hc, wc))
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
