"""The fast rule for `matmul` and `fused_matmul` with a channels-last result (no perm):

    out[..., n] = factor * (bias[n] + sum_k a[..., k] * w[k, n])

Shapes this rule takes: `a` [..., K] (its leading axes flattened to P rows), `w` a compile-time
constant [K, N], no perm (or the identity), optional bias, no upsample (which would act on the
result's last two axes, rows and channels), any factor. Anything else is declined with the reason.

The register tile (see `microkernel`) is turned around from the NCHW rule's: its rows are rows of
`a`, broadcast straight from the input (no packing: a row's k values are contiguous), and its
vectors are channels, read from the weights packed at compile time into [K][width] panels of
`width` = vecs x lanes channels (the last one zero-padded). The parallel loop runs over chunks of
CHUNK_BLOCKS register tiles of rows; in a chunk every weight panel (in L1) passes over all its
rows (in L2). The accumulators start from the bias; the epilogue applies the factor and stores
each row's vectors (streaming stores for a large, aligned result); channels past N in the last
panel are never stored.
"""

from __future__ import annotations

import math

import llvmlite.ir as ir
import numpy as np

from .emit import Int, KernelBuilder
from .isa import host_isa
from .lower_matmul_nchw import STREAMING_MIN_BYTES
from .microkernel import TileShape, choose_tile, register_tile, zero
from .registry import Kernel, Unsupported, lowering
from .simd import constant_vector, vload, vstore

CHUNK_BLOCKS = 16            # register tiles of rows per parallel iteration


def pack_columns(w: np.ndarray, width: int) -> np.ndarray:
    """A [K, N] matrix as consecutive [K, width] panels of its columns, the last zero-padded. Flat."""
    kdim, n = w.shape
    panels = math.ceil(n / width)
    padded = np.zeros((kdim, panels * width), np.float32)
    padded[:, :n] = w
    return np.ascontiguousarray(padded.reshape(kdim, panels, width).transpose(1, 0, 2)).ravel()


def check(k: KernelBuilder) -> np.ndarray:
    attrs = k.attrs
    perm = tuple(attrs.get("perm", ()))
    if perm and perm != tuple(range(len(perm))):
        raise Unsupported(f"perm {list(perm)}: this rule writes the result channels-last (no perm)")
    if attrs.get("upsample", "none") != "none":
        raise Unsupported("upsample of a channels-last result (it would act on rows and channels)")
    w = k.operand_value(1)
    if w is None:
        raise Unsupported("b is not a compile-time constant (the weights are packed at compile time)")
    if k.in_types[1].rank != 2:
        raise Unsupported(f"b is {k.in_types[1]}: expected a [K, N] matrix")
    return w


def emit(k: KernelBuilder, w: np.ndarray, shape: TileShape) -> Kernel:
    attrs = k.attrs
    a_t = k.in_types[0]
    kdim, n = a_t.shape[-1], k.in_types[1].shape[-1]
    rows_total = math.prod(a_t.shape[:-1])
    lanes, vecs, width, rows = shape.lanes, shape.vecs, shape.width, shape.rows
    chunk = rows * CHUNK_BLOCKS
    chunks = math.ceil(rows_total / chunk)
    leftover = rows_total % rows                      # rows of the very last, partial register tile
    factor = float(attrs.get("factor", 1.0))

    packed = pack_columns(w.reshape(kdim, n), width)
    k.define(extent=chunks, constants=[packed])
    b = k.b
    a = k.ins[0]
    bias = k.ins[2] if attrs.get("bias", False) else None
    wpack = k.consts[0]
    # Large results bypass the caches when every vector is aligned (as in the NCHW rule)
    aligned = None
    if n % lanes == 0 and 4 * k.out_type.numel >= STREAMING_MIN_BYTES:
        address = b.ptrtoint(k.out, ir.IntType(64))
        aligned = b.icmp_unsigned("==", b.and_(address, k.i64(lanes * 4 - 1)), k.i64(0))

    def tile(panel: Int, channel0: Int, row0: Int, nrows: int, valid: int) -> None:
        """Rows row0..row0+nrows-1 x the `valid` first channels of the panel at channel0."""
        init = []
        for v in range(vecs):
            if bias is None or valid <= v * lanes:
                init.append(zero(lanes))
            elif valid >= (v + 1) * lanes:
                init.append(vload(k, bias, k.add(channel0, v * lanes), lanes))
            else:                                     # a vector that crosses N: its valid lanes only
                part = zero(lanes)
                for j in range(valid - v * lanes):
                    part = b.insert_element(part, k.load(bias, k.add(channel0, v * lanes + j)),
                                            ir.Constant(ir.IntType(32), j))
                init.append(part)
        at = k.mul(panel, kdim * width)
        acc = register_tile(
            k, kdim, shape, nrows, [list(init) for _ in range(nrows)],
            scalar=lambda kk, r: k.load(a, k.add(k.mul(k.add(row0, r), kdim), kk)),
            vector=lambda kk, v: vload(k, wpack, k.add(at, k.add(k.mul(kk, width), v * lanes)), lanes))
        whole = []
        for r in range(nrows):
            base = k.add(k.mul(k.add(row0, r), n), channel0)
            for v in range(vecs):
                val = acc[r][v]
                if factor != 1.0:
                    val = b.fmul(val, constant_vector([factor] * lanes))
                if valid >= (v + 1) * lanes:
                    whole.append((val, k.add(base, v * lanes)))
                else:
                    for j in range(max(0, valid - v * lanes)):
                        k.store(b.extract_element(val, ir.Constant(ir.IntType(32), j)), k.out,
                                k.add(base, v * lanes + j))
        if aligned is None:
            for val, at in whole:
                vstore(k, val, k.out, at)
            return
        with b.if_else(aligned) as (then, otherwise):
            with then:
                for val, at in whole:
                    vstore(k, val, k.out, at, align=lanes * 4, streaming=True)
            with otherwise:
                for val, at in whole:
                    vstore(k, val, k.out, at)

    def panel_pass(panel: Int, channel0: Int, valid: int, row0: Int, blocks: Int, partial: bool) -> None:
        with k.loop(0, blocks, name="rb") as rb:
            tile(panel, channel0, k.add(row0, k.mul(rb, rows)), rows, valid)
        if partial:
            tile(panel, channel0, k.add(row0, k.mul(blocks, rows)), leftover, valid)

    with k.parallel_loop(name="c") as c:
        row0 = k.mul(c, chunk)
        here = k.min(chunk, k.sub(rows_total, row0))
        blocks = k.div(here, rows)
        last = b.icmp_signed("==", k.i64(c), k.i64(chunks - 1)) if leftover else None

        def every_panel(partial: bool) -> None:
            full_panels, tail = divmod(n, width)
            if full_panels:
                with k.loop(0, full_panels, name="pn") as p:
                    panel_pass(p, k.mul(p, width), width, row0, blocks, partial)
            if tail:
                panel_pass(full_panels, full_panels * width, tail, row0, blocks, partial)

        if last is None:
            every_panel(False)
        else:
            with b.if_else(last) as (then, otherwise):
                with then:
                    every_panel(True)
                with otherwise:
                    every_panel(False)
    return k.finish(cost=2 * kdim * n * chunk)


def _rule(k: KernelBuilder) -> Kernel:
    w = check(k)
    shape = choose_tile(host_isa(), k.in_types[1].shape[-1])
    return emit(k, w, shape)


@lowering("fused_matmul", priority=9, name="channels_last_microkernel")
def fused_matmul_channels_last(k: KernelBuilder) -> Kernel:
    return _rule(k)


@lowering("matmul", priority=9, name="channels_last_microkernel")
def matmul_channels_last(k: KernelBuilder) -> Kernel:
    return _rule(k)
