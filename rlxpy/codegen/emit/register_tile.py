"""The register-blocked GEMM micro-kernel: tile shape, weight packing, panel packing, FMA loop.

Problem: C[c, p] = sum_k A[c, k] * X[p, k] for output channels c (rows of C) and pixels p (its
columns, contiguous in an NCHW plane). A register tile holds `rows` channels x `vecs` vectors of
`lanes` pixels in rows*vecs accumulators. Per k it loads `vecs` vectors of a packed pixel panel,
broadcasts `rows` weights, and issues rows*vecs independent FMAs: with enough of them in flight the
FMA units never wait for a result, and each loaded value is reused rows (or vecs) times from a
register.

- Weights (a compile-time constant) are packed once, at compile time, into panels of channels
  (`pack_panels`): panel j holds A[j*width + r, k] at [k*width + r], so the k loop reads them in
  order.
- Pixels are packed per tile of `vecs*lanes` pixels into a [K][vecs*lanes] panel on the stack (it
  stays in L1/L2 while every channel panel passes over it): `lanes` x `lanes` blocks of the
  channels-last input are transposed in registers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import llvmlite.ir as ir
import numpy as np

from ..isa import VectorISA
from .builder import F32, I64, FunctionBuilder, Int
from .simd import counted_loop, fma, splat, transpose, vec, vload, vstore

# Outputs at least this large are written around the caches (streaming stores) when aligned;
# smaller ones stay in L2 for whoever reads them next.
STREAMING_MIN_BYTES = 2 << 20

UNROLL = 4                     # k steps per iteration of the FMA loop


@dataclass(frozen=True)
class TileShape:
    rows: int                  # output channels per register tile
    vecs: int                  # vectors of pixels per register tile
    lanes: int

    @property
    def width(self) -> int:
        """Pixels per tile."""
        return self.vecs * self.lanes

    @property
    def accumulators(self) -> int:
        return self.rows * self.vecs


def choose_tile(isa: VectorISA, n: int) -> TileShape:
    """The register tile on `isa` (for any `n`: a remainder tile takes the last n % rows channels).

    Three quarters of the register file hold accumulators (24 of 32 zmm, 12 of 16 ymm): enough
    independent FMA chains to cover latency x throughput, with registers left for the pixel vectors
    and a broadcast. With 32 registers, 6 x 4 vectors loads 10 values per 24 FMAs (measured as
    fast as 8 x 3 and ahead of 12 x 2 and 14 x 2 on the SAM 2 neck); with 16, 6 x 2 (measurements in
    docs/performance.md).
    """
    if isa.registers >= 32:
        return TileShape(6, 4, isa.lanes)
    return TileShape(6, 2, isa.lanes)


def pack_panels(w: np.ndarray, width: int, tail: str) -> np.ndarray:
    """A [K, N] matrix as consecutive [K, width] panels of its columns, flat float32, so that a k
    loop reads one panel in order. When width does not divide N, the last panel (`tail`):
      "short"    holds the N % width columns left;
      "overlap"  holds the last `width` columns, overlapping the panel before it (if there is one);
      "pad"      holds the columns left, then zeros up to `width`."""
    kdim, n = w.shape
    full, rest = divmod(n, width)
    parts = []
    if full:
        parts.append(np.ascontiguousarray(w[:, :full * width].reshape(kdim, full, width).transpose(1, 0, 2)).ravel())
    if rest:
        if tail == "overlap" and full:
            last = w[:, n - width:]
        elif tail == "pad":
            last = np.zeros((kdim, width), np.float32)
            last[:, :rest] = w[:, full * width:]
        else:
            last = w[:, full * width:]
        parts.append(np.ascontiguousarray(last).ravel())
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


def pack_pixels(k: FunctionBuilder, x: ir.Value, row_offsets: list[Int], kdim: Int, panel: ir.Value,
                column: Int, width: int, lanes: int, consecutive: bool, leftover: bool = True) -> None:
    """Copy `lanes` channels-last rows of x (each `kdim` long, at `row_offsets`) into the panel as
    columns column..column+lanes-1 of its [kdim][width] layout.

    `consecutive`: the rows follow each other in x, so one base offset addresses them all.
    `leftover`: for a `kdim` known only at run time, whether kdim % lanes may be nonzero.
    """
    b = k.b
    chunks = k.div(kdim, lanes)
    align = lanes * 4

    def row(j: int, kk: Int) -> Int:
        if consecutive:
            return k.add(row_offsets[0], k.add(k.mul(j, kdim), kk))
        return k.add(row_offsets[j], kk)

    def one_channel(kk: Int) -> None:                # gathered lane by lane
        v = ir.Constant(vec(lanes), ir.Undefined)
        for j in range(lanes):
            v = b.insert_element(v, k.load(x, row(j, kk)), ir.Constant(ir.IntType(32), j))
        vstore(k, v, panel, k.add(k.mul(kk, width), column), align=align)

    if not isinstance(chunks, int) or chunks:
        with k.loop(0, chunks, name="pk") as c:
            k0 = k.mul(c, lanes)
            block = transpose(k, [vload(k, x, row(j, k0), lanes) for j in range(lanes)])
            base = k.add(k.mul(k0, width), column)
            for kk, v in enumerate(block):
                vstore(k, v, panel, k.add(base, kk * width), align=align)
    if isinstance(kdim, int):
        for kk in range(chunks * lanes, kdim):       # K % lanes leftover channels, one by one
            one_channel(kk)
    elif leftover:
        with k.loop(k.mul(chunks, lanes), kdim, name="pl") as kk:
            one_channel(kk)


def register_tile(k: FunctionBuilder, kdim: Int, shape: TileShape, rows: int, init: list[list[ir.Value]],
                  scalar: Callable[[Int, int], ir.Value], vector: Callable[[Int, int], ir.Value],
                  each_iteration: Callable[[ir.Value], None] | None = None,
                  remainder: bool = True) -> list[list[ir.Value]]:
    """acc[r][v] = init[r][v] + sum over k < kdim of scalar(k, r) * vector(k, v), summed in k order
    with one FMA per step; `rows` <= shape.rows (a remainder tile). `scalar(k, r)` loads the float
    broadcast to row r, `vector(k, v)` the v-th vector of `lanes` columns. `each_iteration(i)`
    emits extra work (a prefetch) into iteration i of the unrolled k loop. `remainder`: for a
    `kdim` known only at run time, whether kdim % UNROLL may be nonzero."""
    lanes, vecs = shape.lanes, shape.vecs

    def step(kk: Int, acc: list[ir.Value]) -> list[ir.Value]:
        xs = [vector(kk, v) for v in range(vecs)]
        out = list(acc)
        for r in range(rows):
            w = splat(k, scalar(kk, r), lanes)
            for v in range(vecs):
                out[r * vecs + v] = fma(k, w, xs[v], acc[r * vecs + v])
        return out

    def unrolled(i: ir.Value, acc: list[ir.Value]) -> list[ir.Value]:
        if each_iteration is not None:
            each_iteration(i)
        for u in range(UNROLL):
            acc = step(k.add(k.mul(i, UNROLL), u), acc)
        return acc

    flat = [a for row in init for a in row]
    trips = k.div(kdim, UNROLL)
    flat = counted_loop(k, trips, flat, unrolled, name="kk")
    if isinstance(kdim, int):
        for kk in range(kdim - kdim % UNROLL, kdim):
            flat = step(kk, flat)
    elif remainder:
        done = k.mul(trips, UNROLL)
        flat = counted_loop(k, k.rem(kdim, UNROLL), flat, lambda i, acc: step(k.add(done, i), acc), name="kr")
    return [flat[r * vecs:(r + 1) * vecs] for r in range(rows)]


def loop_iterations(kdim: int) -> int:
    """Iterations of register_tile's unrolled k loop."""
    return kdim // UNROLL


def panel_floats(kdim: int, shape: TileShape) -> int:
    return kdim * shape.width


def tile_count(pixels: int, shape: TileShape) -> int:
    return math.ceil(pixels / shape.width)


def zero(lanes: int) -> ir.Constant:
    return ir.Constant(vec(lanes), [ir.Constant(F32, 0.0)] * lanes)


def splat_rows(k: FunctionBuilder, values: ir.Value, first: Int, rows: int, shape: TileShape) -> list[list[ir.Value]]:
    """Accumulators that start from values[first + r] in every lane of row r."""
    out = []
    for r in range(rows):
        s = splat(k, k.load(values, k.add(first, r)), shape.lanes)
        out.append([s] * shape.vecs)
    return out


def streaming_guard(k: FunctionBuilder, out: ir.Value, out_bytes: int, lanes: int) -> ir.Value | None:
    """An i1 that holds when the result may be written with streaming stores: it is large
    (STREAMING_MIN_BYTES) and `out` is aligned to a vector (checked on every call); None when it
    is too small ever to."""
    if out_bytes < STREAMING_MIN_BYTES:
        return None
    address = k.b.ptrtoint(out, I64)
    return k.b.icmp_unsigned("==", k.b.and_(address, k.i64(lanes * 4 - 1)), k.i64(0))


def store_vectors(k: FunctionBuilder, stores: list[tuple[ir.Value, Int]], out: ir.Value,
                  stream: ir.Value | None) -> None:
    """Store each (vector, offset) into `out`; where `stream` holds, as aligned streaming stores
    (no read for ownership, no eviction of what the kernel keeps in cache: nothing reads a large
    result soon). The caller guarantees every offset is a multiple of the vector's lanes."""
    if stream is None:
        for val, at in stores:
            vstore(k, val, out, at)
        return
    with k.b.if_else(stream) as (then, otherwise):
        with then:
            for val, at in stores:
                vstore(k, val, out, at, align=val.type.count * 4, streaming=True)
        with otherwise:
            for val, at in stores:
                vstore(k, val, out, at)
