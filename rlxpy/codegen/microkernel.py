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

import llvmlite.ir as ir
import numpy as np

from .emit import F32, Int, KernelBuilder
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
    """The register tile for `n` output channels on `isa`.

    Registers: rows*vecs accumulators + vecs pixel vectors + 1 broadcast must fit the register file.
    Among the shapes that fit, prefer the most accumulators (FMA latency x throughput must be
    covered, and loads per FMA fall as the tile grows), counting the channels a remainder tile
    computes at lower efficiency as lost, then the fewest loads per FMA.
    """
    best, best_key = None, None
    for vecs in range(1, 5):
        for rows in range(1, isa.registers):
            if rows * vecs + vecs + 1 > isa.registers:
                break
            full, rest = divmod(n, rows)
            # work done at full efficiency, with the remainder tile's rows counted at its share
            eff_rows = rows if full else n
            useful = (full * rows * rows * vecs + rest * rest * vecs) / max(n, 1)
            loads = (rows + vecs) / (rows * vecs)
            key = (min(useful, 24) if isa.registers >= 32 else min(useful, 12), -loads, eff_rows)
            if best_key is None or key > best_key:
                best, best_key = TileShape(rows, vecs, isa.lanes), key
    return best


def pack_weights(w: np.ndarray, rows: int) -> np.ndarray:
    """A [K, N] weight matrix as consecutive [K, rows] panels of its columns (channels); the last
    panel has N % rows columns when rows does not divide N. Flat float32."""
    kdim, n = w.shape
    full = n // rows
    parts = []
    if full:
        parts.append(np.ascontiguousarray(w[:, :full * rows].reshape(kdim, full, rows).transpose(1, 0, 2)).ravel())
    if n % rows:
        parts.append(np.ascontiguousarray(w[:, full * rows:]).ravel())
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


def pack_pixels(k: KernelBuilder, x: ir.Value, row_offsets: list[Int], kdim: int, panel: ir.Value,
                column: int, width: int, lanes: int, consecutive: bool) -> None:
    """Copy `lanes` channels-last rows of x (each `kdim` long, at `row_offsets`) into the panel as
    columns column..column+lanes-1 of its [kdim][width] layout.

    `consecutive`: the rows follow each other in x, so one base offset addresses them all.
    """
    b = k.b
    chunks = kdim // lanes
    align = lanes * 4

    def row(j: int, kk: Int) -> Int:
        if consecutive:
            return k.add(row_offsets[0], k.add(k.mul(j, kdim), kk))
        return k.add(row_offsets[j], kk)

    if chunks:
        with k.loop(0, chunks, name="pk") as c:
            k0 = k.mul(c, lanes)
            block = transpose(k, [vload(k, x, row(j, k0), lanes) for j in range(lanes)])
            base = k.add(k.mul(k0, width), column)
            for kk, v in enumerate(block):
                vstore(k, v, panel, k.add(base, kk * width), align=align)
    for kk in range(chunks * lanes, kdim):           # K % lanes leftover channels, one by one
        v = ir.Constant(vec(lanes), ir.Undefined)
        for j in range(lanes):
            v = b.insert_element(v, k.load(x, row(j, kk)), ir.Constant(ir.IntType(32), j))
        vstore(k, v, panel, kk * width + column, align=align)


def register_tile(k: KernelBuilder, weights: ir.Value, weights_at: Int, panel: ir.Value, kdim: int,
                  shape: TileShape, rows: int, init: list[list[ir.Value]]) -> list[list[ir.Value]]:
    """acc[r][v] = init[r][v] + sum_k weights[weights_at + k*rows + r] * panel[k][v*lanes : +lanes],
    summed in k order with one FMA per step; `rows` <= shape.rows (a remainder tile)."""
    lanes, vecs, width = shape.lanes, shape.vecs, shape.width
    align = lanes * 4

    def step(kk: Int, acc: list[ir.Value]) -> list[ir.Value]:
        xs = [vload(k, panel, k.add(k.mul(kk, width), v * lanes), lanes, align=align) for v in range(vecs)]
        out = list(acc)
        for r in range(rows):
            w = splat(k, k.load(weights, k.add(weights_at, k.add(k.mul(kk, rows), r))), lanes)
            for v in range(vecs):
                out[r * vecs + v] = fma(k, w, xs[v], acc[r * vecs + v])
        return out

    def unrolled(i: ir.Value, acc: list[ir.Value]) -> list[ir.Value]:
        for u in range(UNROLL):
            acc = step(k.add(k.mul(i, UNROLL), u), acc)
        return acc

    flat = [a for row in init for a in row]
    flat = counted_loop(k, kdim // UNROLL, flat, unrolled, name="kk")
    for kk in range(kdim - kdim % UNROLL, kdim):
        flat = step(kk, flat)
    return [flat[r * vecs:(r + 1) * vecs] for r in range(rows)]


def panel_floats(kdim: int, shape: TileShape) -> int:
    return kdim * shape.width


def tile_count(pixels: int, shape: TileShape) -> int:
    return math.ceil(pixels / shape.width)


def zero(lanes: int) -> ir.Constant:
    return ir.Constant(vec(lanes), [ir.Constant(F32, 0.0)] * lanes)


def bias_vectors(k: KernelBuilder, bias: ir.Value | None, channel0: Int, rows: int, shape: TileShape) -> list[list[ir.Value]]:
    """The accumulators' start: each channel's bias in every lane (or zero)."""
    if bias is None:
        return [[zero(shape.lanes)] * shape.vecs for _ in range(rows)]
    out = []
    for r in range(rows):
        s = splat(k, k.load(bias, k.add(channel0, r)), shape.lanes)
        out.append([s] * shape.vecs)
    return out
