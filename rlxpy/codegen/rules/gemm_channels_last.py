"""The fast rule for `matmul` and `fused_matmul` with a channels-last result (no perm):

    out[..., n] = epilogue(sum_k a[..., k] * w[k, n])

Shapes this rule takes: `a` [..., K] (its leading axes flattened to P rows), `w` a compile-time
constant [K, N], no perm (or the identity), and an epilogue whose steps read operands along the
channel axis (a bias) or nothing (scale, relu, ...); when the first step is a bias on the last
axis, the accumulators start from it. Anything else is declined with the reason.

The register tile (see `emit.register_tile`) is turned around from the NCHW rule's: its rows are
rows of `a`, broadcast straight from the input (no packing: a row's k values are contiguous), and
its vectors are channels, read from the weights packed at compile time into [K][width] panels of
`width` = vecs x lanes channels (the last one zero-padded). The parallel loop runs over chunks of
CHUNK_BLOCKS register tiles of rows; in a chunk every weight panel (in L1) passes over all its
rows (in L2). The epilogue applies the steps to each row's vectors and stores them (streaming
stores for a large, aligned result); channels past N in the last panel are never stored, and never
read from an operand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import llvmlite.ir as ir

from ...ir.graph import Graph, Node
from ..emit.builder import Int, KernelBuilder
from ..emit.epilogue import LoweredStep, VectorSteps, View, apply_scalar, lower_steps
from ..emit.register_tile import (TileShape, choose_tile, pack_panels, register_tile, store_vectors,
                                  streaming_guard, zero)
from ..emit.simd import vload
from ..isa import VectorISA
from ..rule import Rule, Spec, Unsupported

CHUNK_BLOCKS = 16            # register tiles of rows per parallel iteration


@dataclass(frozen=True, kw_only=True)
class ChannelsLastSpec(Spec):
    shape: TileShape
    rows: int                        # P: rows of `a` (its leading axes flattened)
    k: int
    n: int
    bias_init: int                   # operand index of a leading bias on the channels, or -1
    steps: tuple[LoweredStep, ...]   # the rest of the epilogue
    out_shape: tuple[int, ...]
    out_bytes: int


class ChannelsLastMicrokernel(Rule):
    name = "channels_last_microkernel"
    ops = ("matmul", "fused_matmul")
    priority = 9

    def match(self, node: Node, graph: Graph, target: VectorISA) -> ChannelsLastSpec:
        perm = tuple(node.attrs.get("perm", ()))
        if perm and perm != tuple(range(len(perm))):
            raise Unsupported(f"perm {list(perm)}: this rule writes the result channels-last (no perm)")
        if graph[node.operands[1]].op != "const":
            raise Unsupported("b is not a compile-time constant (the weights are packed at compile time)")
        w_t = graph.type_of(node.operands[1])
        if w_t.rank != 2:
            raise Unsupported(f"b is {w_t}: expected a [K, N] matrix")
        steps = lower_steps(node.attrs.get("epilogue", ()), node, graph, first=2)
        rank = node.type.rank
        for st in steps:
            for o in st.operands:
                if o.access.kind != "axis" or st.mode(o.access) % rank != rank - 1:
                    raise Unsupported(f"epilogue step {st.op} reads '{o.access.kind}' operands; this rule's "
                                      f"epilogue reads operands along the channels only")
        bias_init = -1
        if steps and steps[0].op == "bias_add":
            bias_init, steps = steps[0].operands[0].index, steps[1:]
        a_t = graph.type_of(node.operands[0])
        kdim, n = a_t.shape[-1], w_t.shape[-1]
        shape = choose_tile(target, n)
        rows_total = math.prod(a_t.shape[:-1])
        chunk = shape.rows * CHUNK_BLOCKS
        return ChannelsLastSpec(extent=math.ceil(rows_total / chunk), cost=2 * kdim * n * chunk,
                                operands=len(node.operands), constants=1, shape=shape, rows=rows_total,
                                k=kdim, n=n, bias_init=bias_init, steps=steps, out_shape=node.type.shape,
                                out_bytes=4 * node.type.numel)

    def constants(self, spec: ChannelsLastSpec, node: Node, graph: Graph):
        w = graph[node.operands[1]].value
        return (pack_panels(w.reshape(spec.k, spec.n), spec.shape.width, "pad"),)

    def emit(self, spec: ChannelsLastSpec, k: KernelBuilder) -> None:
        _emit(spec, k)


def _emit(spec: ChannelsLastSpec, k: KernelBuilder) -> None:
    shape, kdim, n, rows_total = spec.shape, spec.k, spec.n, spec.rows
    lanes, vecs, width, rows = shape.lanes, shape.vecs, shape.width, shape.rows
    chunk = rows * CHUNK_BLOCKS
    chunks = spec.extent
    leftover = rows_total % rows                      # rows of the very last, partial register tile
    b = k.b
    a = k.ins[0]
    bias = k.ins[spec.bias_init] if spec.bias_init >= 0 else None
    wpack = k.consts[0]
    views = {o.index: View(k.ins[o.index], o.shape) for st in spec.steps for o in st.operands}
    rank = len(spec.out_shape)
    last = rank - 1
    # Large results bypass the caches when every vector is aligned (as in the NCHW rule)
    stream = streaming_guard(k, k.out, spec.out_bytes, lanes) if n % lanes == 0 else None

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
        # the epilogue's operands run along the channels only: one position per vector of the panel
        positions = {v: VectorSteps(k, spec.steps, views, lanes, rank, (last,), {last: k.add(channel0, v * lanes)})
                     for v in range(vecs) if valid >= (v + 1) * lanes}
        whole = []
        for r in range(nrows):
            base = k.add(k.mul(k.add(row0, r), n), channel0)
            for v in range(vecs):
                val = acc[r][v]
                if valid >= (v + 1) * lanes:
                    whole.append((positions[v].apply(val, {}), k.add(base, v * lanes)))
                else:                                 # lanes past N: stored (and read) one by one
                    for j in range(max(0, valid - v * lanes)):
                        one = b.extract_element(val, ir.Constant(ir.IntType(32), j))
                        coords = [0] * last + [k.add(channel0, v * lanes + j)]
                        k.store(apply_scalar(k, spec.steps, one, coords, views), k.out, k.add(base, v * lanes + j))
        store_vectors(k, whole, k.out, stream)

    def panel_pass(panel: Int, channel0: Int, valid: int, row0: Int, blocks: Int, partial: bool) -> None:
        with k.loop(0, blocks, name="rb") as rb:
            tile(panel, channel0, k.add(row0, k.mul(rb, rows)), rows, valid)
        if partial:
            tile(panel, channel0, k.add(row0, k.mul(blocks, rows)), leftover, valid)

    with k.parallel_loop(name="c") as c:
        row0 = k.mul(c, chunk)
        here = k.min(chunk, k.sub(rows_total, row0))
        blocks = k.div(here, rows)
        is_last = b.icmp_signed("==", k.i64(c), k.i64(chunks - 1)) if leftover else None

        def every_panel(partial: bool) -> None:
            full_panels, tail = divmod(n, width)
            if full_panels:
                with k.loop(0, full_panels, name="pn") as p:
                    panel_pass(p, k.mul(p, width), width, row0, blocks, partial)
            if tail:
                panel_pass(full_panels, full_panels * width, tail, row0, blocks, partial)

        if is_last is None:
            every_panel(False)
        else:
            with b.if_else(is_last) as (then, otherwise):
                with then:
                    every_panel(True)
                with otherwise:
                    every_panel(False)
