"""The register-blocked GEMM micro-kernel: tile shape, weight packing, panel packing, FMA loop.

Problem: C[c, p] = sum_k A[c, k] * X[p, k] for output channels c (rows of C) and pixels p (its
columns, contiguous in an NCHW plane). A register tile holds `rows` channels x `vecs` vectors of
`lanes` pixels in rows*vecs accumulators. Per k it loads `vecs` vectors of a packed pixel panel,
broadcasts `rows` weights, and issues rows*vecs independent FMAs: with enough of them in flight the
FMA units never wait for a result, and each loaded value is reused rows (or vecs) times from a
register.

- Weights (a compile-time constant) are packed once, at compile time, into panels of `rows`
  channels: panel j holds A[j*rows + r, k] at [k*rows + r], so the k loop reads them in order.
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

from .emit import F32, FunctionBuilder, Int
from .isa import VectorISA
from .simd import counted_loop, fma, splat, transpose, vec, vload, vstore

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


def pack_weights(w: np.ndarray, rows: int, overlap: bool = False) -> np.ndarray:
    """A [K, N] weight matrix as consecutive [K, rows] panels of its columns (channels); the last
    panel has N % rows columns when rows does not divide N, or with `overlap` (and N > rows) it
    holds the last `rows` columns, overlapping the panel before it. Flat float32."""
    kdim, n = w.shape
    full = n // rows
    parts = []
    if full:
        parts.append(np.ascontiguousarray(w[:, :full * rows].reshape(kdim, full, rows).transpose(1, 0, 2)).ravel())
    if n % rows:
        parts.append(np.ascontiguousarray(w[:, n - rows if overlap and full else full * rows:]).ravel())
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


def bias_vectors(k: FunctionBuilder, bias: ir.Value | None, channel0: Int, rows: int, shape: TileShape) -> list[list[ir.Value]]:
    """The accumulators' start: each channel's bias in every lane (or zero)."""
    if bias is None:
        return [[zero(shape.lanes)] * shape.vecs for _ in range(rows)]
    out = []
    for r in range(rows):
        s = splat(k, k.load(bias, k.add(channel0, r)), shape.lanes)
        out.append([s] * shape.vecs)
    return out
