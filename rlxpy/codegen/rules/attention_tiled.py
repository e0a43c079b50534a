"""The vectorised attention kernels: `attention_flash` (online softmax over blocks of keys) and
`attention_tile` (all keys in one block), one emitter with register tiles for both products.

The parallel loop runs over (problem, block of queries). A block is `qvecs` vectors of `lanes`
queries; its queries are packed once, transposed, into a [D][block] panel. Then, per block of keys:

    scores    S^T[j, i] = scale * sum_d k[j, d] q[i, d]: a register tile of keys (broadcast
              straight from k's rows, no packing) x the block's query vectors (from the panel),
              stored to a [keys][block] buffer while the largest score of each query is kept in
              vectors (the keys run down the tile, so the max over keys is a vertical max)
    softmax   m' = max(m, block max), alpha = exp(m - m'), P = exp(S - m') in place, l = l alpha + sum P
    values    O = O alpha + P v: a register tile of queries (P broadcast from the buffer) x
              vectors of Dv (v's rows read in place; a masked load for the lanes past the last
              multiple of the lanes, so nothing past a row is read)

and at the end out = O times 1 / l. `attention_flash` keeps O, m and l of the block in buffers
across blocks of KEY_BLOCK keys, so the scores of one key block are all that exist at once,
whatever Lk is: its buffers depend on D, Dv and KEY_BLOCK only. `attention_tile` takes every key in
one block when its buffers (the scores of a query block over all Lk keys) fit in TILE_BYTES: no
rescaling, and the values' tile writes the output directly. Each rule declines what the other
(or `attention_loop`) should take, and says why.

Both tiles share the accumulators the GEMM micro-kernel keeps (choose_tile) between rows and
vectors: few query vectors (a short sequence) give a tile of more keys, a narrow Dv a tile of
more queries. A tile that runs past the last key or query of a block repeats that key or query
(its results are computed again and stored to the same place), and lanes past Lq hold copies of
the last query, never stored: every read stays inside its operand, every write inside the
output's rows. The trip counts of the last block of queries and of keys are run-time values, so
each part of the kernel is emitted once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import llvmlite.ir as ir

from ...ir.graph import Graph, Node
from ..emit.builder import F32, FunctionBuilder, Int, KernelBuilder
from ..emit.register_tile import TileShape, choose_tile, pack_pixels, register_tile, zero
from ..emit.simd import I32, counted_loop, splat, vec, vec_ptr, vload, vstore
from ..isa import VectorISA
from ..rule import Rule, Spec, Unsupported
from .attention import Geometry, exp, geometry

KEY_BLOCK = 96                 # keys per block of attention_flash (a multiple of every score tile's keys)
TILE_BYTES = 96 << 10          # attention_tile's buffers at most this (in L2 with room to spare)
STACK_BYTES = 512 << 10        # what a kernel may take on its thread's stack


@dataclass(frozen=True, kw_only=True)
class TiledSpec(Spec):
    g: Geometry
    lanes: int
    keys: int                  # keys per register tile of the scores (its rows)
    qvecs: int                 # vectors of queries per block
    dv_tile: TileShape         # the values' register tile: queries x vectors of Dv
    key_block: int             # keys per block (Lk for attention_tile)
    online: bool               # running max and sums across key blocks (attention_flash)

    @property
    def block(self) -> int:
        return self.qvecs * self.lanes

    @property
    def blocks(self) -> int:
        return math.ceil(self.g.lq / self.block)

    @property
    def dv_padded(self) -> int:
        return math.ceil(self.g.dv / self.lanes) * self.lanes



def _plan(g: Geometry, target: VectorISA, key_block: int, online: bool) -> TiledSpec:
    """Tile shapes from the register file: as many accumulators as the GEMM micro-kernel keeps
    (choose_tile: 24 with 32 registers, 12 with 16), shared between rows and vectors so that short
    sequences and narrow values do not leave accumulators idle."""
    tile = choose_tile(target, g.dv)
    lanes, budget = tile.lanes, tile.accumulators
    qvecs = min(tile.vecs, math.ceil(g.lq / lanes))                   # query vectors per block
    keys = min(budget // qvecs, g.lk)                                  # keys per tile of scores
    dv_vecs = min(tile.vecs, math.ceil(g.dv / lanes))                  # Dv vectors per values tile
    rows = _rows(min(qvecs * lanes, g.lq), budget // dv_vecs)         # queries per values tile
    spec = TiledSpec(extent=0, cost=0, operands=3, g=g, lanes=lanes, keys=keys, qvecs=qvecs,
                     dv_tile=TileShape(rows, dv_vecs, lanes), key_block=key_block, online=online)
    return replace(spec, extent=g.problems * spec.blocks, cost=2 * spec.block * g.lk * (g.d + g.dv))


def _rows(count: int, most: int) -> int:
    """Rows per tile for `count` rows: the most that repeat no more than an eighth of them."""
    for rows in range(min(most, count), 0, -1):
        if math.ceil(count / rows) * rows - count <= count / 8:
            return rows
    return 1


def buffer_bytes(s: TiledSpec) -> int:
    """Bytes of stack the kernel's buffers take."""
    floats = s.g.d * s.block + s.key_block * s.block + s.block           # panel, scores, sums
    if s.online:
        floats += s.block * s.dv_padded + 2 * s.block                    # O, max, alpha
    return 4 * floats


def _kib(n: int) -> str:
    return f"{n / 1024:.0f} KiB"


class AttentionFlash(Rule):
    name = "attention_flash"
    ops = ("attention",)
    priority = 30

    def match(self, node: Node, graph: Graph, target: VectorISA) -> TiledSpec:
        g = geometry(node, graph)
        whole = _plan(g, target, g.lk, online=False)
        if buffer_bytes(whole) <= TILE_BYTES:
            raise Unsupported(f"the scores of a block of {whole.block} queries over all {g.lk} keys "
                              f"({_kib(buffer_bytes(whole))} with their buffers) fit in cache: no need to "
                              f"stream the keys")
        spec = _plan(g, target, min(KEY_BLOCK, g.lk), online=True)
        if buffer_bytes(spec) > STACK_BYTES:
            raise Unsupported(f"D = {g.d} and Dv = {g.dv} need {_kib(buffer_bytes(spec))} of buffers, over "
                              f"the {_kib(STACK_BYTES)} a kernel may take on its stack")
        return spec

    def emit(self, spec: TiledSpec, k: KernelBuilder) -> None:
        _emit(spec, k)


class AttentionTile(Rule):
    name = "attention_tile"
    ops = ("attention",)
    priority = 20

    def match(self, node: Node, graph: Graph, target: VectorISA) -> TiledSpec:
        g = geometry(node, graph)
        spec = _plan(g, target, g.lk, online=False)
        if buffer_bytes(spec) > TILE_BYTES:
            raise Unsupported(f"the scores of a block of {spec.block} queries over all {g.lk} keys need "
                              f"{_kib(buffer_bytes(spec))} of buffers, over the {_kib(TILE_BYTES)} kept in cache")
        return spec

    def emit(self, spec: TiledSpec, k: KernelBuilder) -> None:
        _emit(spec, k)


# -- vectors with a partial tail --------------------------------------------------------------------


def _mask(lanes: int, count: int) -> ir.Constant:
    i1 = ir.IntType(1)
    return ir.Constant(ir.VectorType(i1, lanes), [ir.Constant(i1, int(i < count)) for i in range(lanes)])


def _masked(f: FunctionBuilder, what: str, lanes: int) -> ir.Function:
    name = f"llvm.masked.{what}.v{lanes}f32.p0"
    fn = f.module.globals.get(name)
    if fn is not None:
        return fn
    vt = vec(lanes)
    mask_t = ir.VectorType(ir.IntType(1), lanes)
    if what == "load":
        return ir.Function(f.module, ir.FunctionType(vt, [vt.as_pointer(), I32, mask_t, vt]), name=name)
    return ir.Function(f.module, ir.FunctionType(ir.VoidType(), [vt, vt.as_pointer(), I32, mask_t]), name=name)


def load_first(f: FunctionBuilder, base: ir.Value, offset: Int, lanes: int, count: int) -> ir.Value:
    """A vector of base[offset : offset + count], zeros in the other lanes; nothing past is read."""
    if count >= lanes:
        return vload(f, base, offset, lanes)
    return f.b.call(_masked(f, "load", lanes), [vec_ptr(f, base, offset, lanes), ir.Constant(I32, 4),
                                                 _mask(lanes, count), zero(lanes)])


def store_first(f: FunctionBuilder, value: ir.Value, base: ir.Value, offset: Int, count: int) -> None:
    """Store the first `count` lanes of `value` at base[offset:]; nothing past is written."""
    lanes = value.type.count
    if count >= lanes:
        vstore(f, value, base, offset)
        return
    f.b.call(_masked(f, "store", lanes), [value, vec_ptr(f, base, offset, lanes), ir.Constant(I32, 4),
                                           _mask(lanes, count)])


def _vmax(f: FunctionBuilder, a: ir.Value, b: ir.Value) -> ir.Value:
    return f.b.select(f.b.fcmp_ordered(">", a, b), a, b)


def _const_vec(value: float, lanes: int) -> ir.Constant:
    return ir.Constant(vec(lanes), [FunctionBuilder.f32(value)] * lanes)


# -- the kernel ---------------------------------------------------------------------------------------


def _emit(spec: TiledSpec, k: KernelBuilder) -> None:
    g, lanes, block, nvec = spec.g, spec.lanes, spec.block, spec.qvecs
    b = k.b
    q, key, val = k.ins
    dvp = spec.dv_padded
    kb = spec.key_block
    key_rows = math.ceil(kb / spec.keys) * spec.keys
    panel = k.alloca(F32, g.d * block, "qpanel")          # [D][block]: the block's queries, transposed
    scores = k.alloca(F32, key_rows * block, "scores")     # [keys][block]: S^T, then P^T
    sums = k.alloca(F32, block, "sums")
    if spec.online:
        acc_o = k.alloca(F32, block * dvp, "acc")          # [block][Dv']: O
        maxes = k.alloca(F32, block, "max")
        alphas = k.alloca(F32, block, "alpha")
    scale = _const_vec(g.scale, lanes)
    blocks = spec.blocks
    tile = spec.dv_tile

    def query_block(q0: Int, k0: Int, v0: Int, out0: Int, i0: Int, valid: Int) -> None:
        """Queries i0 .. i0 + valid - 1 of one problem (its q, k, v and out at q0, k0, v0, out0)."""
        last_query = k.sub(valid, 1)

        # the panel, by in-register transposes; lanes past the last query repeat it
        with k.loop(0, nvec, name="pq") as c:
            rows = [k.add(q0, k.mul(k.min(k.add(k.mul(c, lanes), r), last_query), g.d)) for r in range(lanes)]
            rows = [k.add(k.mul(i0, g.d), r) for r in rows]
            pack_pixels(k, q, rows, g.d, panel, k.mul(c, lanes), block, lanes, consecutive=False)
        if spec.online:
            for c in range(nvec):
                vstore(k, _const_vec(-math.inf, lanes), maxes, c * lanes)
                vstore(k, zero(lanes), sums, c * lanes)
            with k.loop(0, k.mul(valid, dvp // lanes), name="oz") as z:
                vstore(k, zero(lanes), acc_o, k.mul(z, lanes))

        def key_block(j0: Int, nk: Int, final: bool) -> None:
            """Keys j0 .. j0 + nk - 1; `final`: the values' tile writes the output."""
            last_key = k.add(j0, k.sub(nk, 1))

            def score_tile(t: ir.Value, top: list[ir.Value]) -> list[ir.Value]:
                """The t-th tile of keys of the block (past the last key, the last repeats):
                scores stored, the running max updated."""
                j = k.mul(t, spec.keys)
                rows = [k.add(k0, k.mul(k.min(k.add(j0, k.add(j, r)), last_key), g.d)) for r in range(spec.keys)]
                acc = register_tile(
                    k, g.d, TileShape(spec.keys, nvec, lanes), spec.keys, [[zero(lanes)] * nvec for _ in range(spec.keys)],
                    scalar=lambda d, r: k.load(key, k.add(rows[r], d)),
                    vector=lambda d, v: vload(k, panel, k.add(k.mul(d, block), v * lanes), lanes))
                top = list(top)
                for r in range(spec.keys):
                    for v in range(nvec):
                        s = b.fmul(acc[r][v], scale)
                        vstore(k, s, scores, k.add(k.mul(k.add(j, r), block), v * lanes))
                        top[v] = _vmax(k, top[v], s)
                return top

            top = counted_loop(k, k.ceil_div(nk, spec.keys), [_const_vec(-math.inf, lanes)] * nvec, score_tile,
                               name="kt")

            # softmax: the new max, the old sums' factor, P in place of S, the new sums
            if spec.online:
                new_max = []
                for v in range(nvec):
                    old = vload(k, maxes, v * lanes, lanes)
                    m = _vmax(k, old, top[v])
                    vstore(k, exp(k, b.fsub(old, m)), alphas, v * lanes)
                    vstore(k, m, maxes, v * lanes)
                    new_max.append(m)
            else:
                new_max = top

            def weights(j: ir.Value, acc: list[ir.Value]) -> list[ir.Value]:
                out = []
                for v in range(nvec):
                    at = k.add(k.mul(j, block), v * lanes)
                    p = exp(k, b.fsub(vload(k, scores, at, lanes), new_max[v]))
                    vstore(k, p, scores, at)
                    out.append(b.fadd(acc[v], p))
                return out

            total = counted_loop(k, nk, [zero(lanes)] * nvec, weights, name="sm")
            for v in range(nvec):
                if spec.online:
                    old = b.fmul(vload(k, sums, v * lanes, lanes), vload(k, alphas, v * lanes, lanes))
                    vstore(k, b.fadd(old, total[v]), sums, v * lanes)
                else:                                      # the output is O times 1 / sum
                    vstore(k, b.fdiv(_const_vec(1.0, lanes), total[v]), sums, v * lanes)

            # values: O = O alpha + P v, per tile of query rows (past the last, it repeats) and panel of Dv
            def value(j: Int, e: int) -> ir.Value:          # v's row j from column e (masked past Dv)
                return load_first(k, val, k.add(v0, k.add(k.mul(k.add(j0, j), g.dv), e)), lanes, g.dv - e)

            with k.loop(0, k.ceil_div(valid, tile.rows), name="qr") as group:
                rows = [k.min(k.add(k.mul(group, tile.rows), r), last_query) for r in range(tile.rows)]
                for e0 in range(0, dvp, tile.width):
                    nv = min(tile.vecs, (dvp - e0) // lanes)
                    if spec.online:
                        init = []
                        for r in rows:
                            a = splat(k, k.load(alphas, r), lanes)
                            at = k.add(k.mul(r, dvp), e0)
                            init.append([b.fmul(vload(k, acc_o, k.add(at, v * lanes), lanes), a) for v in range(nv)])
                    else:
                        init = [[zero(lanes)] * nv for _ in rows]
                    acc = register_tile(
                        k, nk, TileShape(tile.rows, nv, lanes), tile.rows, init,
                        scalar=lambda j, r: k.load(scores, k.add(k.mul(j, block), rows[r])),
                        vector=lambda j, v: value(j, e0 + v * lanes))
                    for r, row in enumerate(rows):
                        if final:
                            inv = splat(k, k.load(sums, row), lanes)
                            at = k.add(out0, k.mul(k.add(i0, row), g.dv))
                            for v in range(nv):
                                e = e0 + v * lanes
                                store_first(k, b.fmul(acc[r][v], inv), k.out, k.add(at, e), g.dv - e)
                        else:
                            at = k.add(k.mul(row, dvp), e0)
                            for v in range(nv):
                                vstore(k, acc[r][v], acc_o, k.add(at, v * lanes))

        if not spec.online:
            key_block(0, g.lk, final=True)
            return
        with k.loop(0, math.ceil(g.lk / kb), name="kb") as kblock:
            j0 = k.mul(kblock, kb)
            key_block(j0, k.min(kb, k.sub(g.lk, j0)), final=False)
        for v in range(nvec):                                  # out = O times 1 / l
            vstore(k, b.fdiv(_const_vec(1.0, lanes), vload(k, sums, v * lanes, lanes)), sums, v * lanes)
        with k.loop(0, valid, name="or") as r:
            inv = splat(k, k.load(sums, r), lanes)
            at = k.add(out0, k.mul(k.add(i0, r), g.dv))
            for e in range(0, dvp, lanes):
                o = vload(k, acc_o, k.add(k.mul(r, dvp), e), lanes)
                store_first(k, b.fmul(o, inv), k.out, k.add(at, e), g.dv - e)

    with k.parallel_loop(name="blk") as p:
        problem, qb = k.div(p, blocks), k.rem(p, blocks)
        q0, k0, v0 = g.offsets(k, problem)
        i0 = k.mul(qb, block)
        query_block(q0, k0, v0, k.mul(problem, g.lq * g.dv), i0, k.min(block, k.sub(g.lq, i0)))
