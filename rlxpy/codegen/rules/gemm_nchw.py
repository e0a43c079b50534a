"""The fast rule for `fused_matmul`: a 1x1 convolution from channels-last input to NCHW output.

    out[b, c, y, x] = epilogue(sum_k a[b, y, x, k] * w[k, c])

Shapes this rule takes: `a` [B, H, W, K] channels-last, `w` a compile-time constant [K, N], perm
(0, 3, 1, 2), and any epilogue of pointwise steps whose operands a vector of consecutive pixels
can read (a bias per channel, a coarse NCHW level upsampled 2x, anything elementwise); when the
first step is a bias on the channel axis, the accumulators start from it. Anything else is declined
with the reason (the generic rule then runs, and the executable's report shows why).

The parallel loop runs over tiles of `width` consecutive pixels of one image (B * ceil(H*W /
width) of them). For each tile: its pixels are packed into a [K][width] panel, then every panel of
channels runs the register tile over it (see `emit.register_tile`); the epilogue applies the steps
to each channel's vectors and stores them straight into its NCHW plane: with streaming
(non-temporal) stores when the output is large and aligned, since nothing reads it soon. While a
tile computes, the next tile's input rows are prefetched, one cache line per k iteration. A tile
that is not full (the last of an image), or whose vectors an epilogue step cannot read as vectors
(an upsample when W is not a multiple of the vector, so a vector crosses rows), takes the scalar
epilogue: it spills the tile and walks its valid pixels one by one.

Code size. The kernel of a node only allocates its pixel panel and calls a body that takes the
shapes (K, H, W; the batch only bounds the parallel range) as arguments and is specialised on the
rest (`Body`: tile shape, N, epilogue, which remainders can occur): nodes of one module that
differ only in shapes, such as the neck's levels, share it, and a shared body costs LLVM one
compile. What the shapes no longer fold (divisions by the tile count and width once per tile, a
few multiplies per store row) is noise beside a tile's K x N x width multiply-adds. When the
register tile's rows do not divide N the last channel block overlaps the one before (see
`Body.blocks`) rather than adding a remainder tile.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import llvmlite.ir as ir

from ...ir.graph import Graph, Node
from ..emit.builder import F32, FLOAT_PTR, I1, I64, FunctionBuilder, Int, KernelBuilder
from ..emit.epilogue import LoweredStep, VectorSteps, View, apply_scalar, lower_steps, vector_refusal
from ..emit.register_tile import (UNROLL, TileShape, choose_tile, loop_iterations, pack_panels, pack_pixels,
                                  panel_floats, register_tile, splat_rows, store_vectors, streaming_guard,
                                  tile_count, zero)
from ..emit.simd import prefetch, vload, vstore
from ..isa import VectorISA
from ..rule import Rule, Spec, Unsupported

NHWC_TO_NCHW = (0, 3, 1, 2)
# The pixel panel lives on the kernel's stack; beyond this the generic rule runs. The SAM 2 necks
# need at most 288 KiB (K = 1152); the limit stays far below a thread's stack (8 MiB with glibc,
# 1 MiB or less elsewhere), and a panel this large no longer fits in L2 anyway.
MAX_PANEL_BYTES = 512 << 10


@dataclass(frozen=True)
class Body:
    """What a kernel body is specialised on. The shapes (K, H, W) are its arguments, so nodes that
    differ only in them (the neck's levels) share one body in the module."""

    shape: TileShape
    n: int                         # output channels
    bias_init: int                 # operand index of a leading bias the accumulators start from, or -1
    steps: tuple[LoweredStep, ...] # the rest of the epilogue (operand shapes left out: run-time)
    vector_epilogue: bool          # each step's operands can be read a vector at a time
    rows_span: bool                # an epilogue step reads by position and W % lanes == 0
    always_full: bool              # H*W % tile width == 0: no partial tiles
    streaming: bool                # H*W % lanes == 0: aligned vectors, streaming stores allowed
    k_rest: bool                   # K % UNROLL may be nonzero
    k_lanes_rest: bool             # K % lanes may be nonzero
    spread: bool                   # prefetches spread over the k loop (else a burst per block)

    @property
    def name(self) -> str:
        s = self.shape
        flags = "".join(c for c, on in zip("vwfsrlp", (self.vector_epilogue, self.rows_span, self.always_full,
                                                       self.streaming, self.k_rest, self.k_lanes_rest,
                                                       self.spread)) if on)
        epilogue = ".".join(_step_name(st) for st in self.steps) or "-"
        return (f"rlx.nchw_body.{s.rows}x{s.vecs}x{s.lanes}.n{self.n}{'.bias' if self.bias_init >= 0 else ''}"
                f".{epilogue}.{flags or '-'}")

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

    @property
    def operand_indices(self) -> list[int]:
        """The epilogue's operands, as indices of the node's operands, in the body's order."""
        first = [self.bias_init] if self.bias_init >= 0 else []
        return first + [o.index for st in self.steps for o in st.operands]

    def params(self) -> list[tuple[str, ir.Type]]:
        pointers = ["out", "x", "wpack"] + [f"e{i}" for i in self.operand_indices] + ["panel"]
        return ([(p, FLOAT_PTR) for p in pointers] + [(i, I64) for i in ("lo", "hi", "K", "H", "W")]
                + ([("stream", I1)] if self.streaming else []))


def _step_name(step: LoweredStep) -> str:
    values = "".join(f"-{v.hex() if isinstance(v, float) else v}" for _, v in step.attrs)
    return step.op + values


@dataclass(frozen=True, kw_only=True)
class NchwSpec(Spec):
    body: Body
    batch: int
    height: int
    width: int
    k: int
    out_bytes: int


def _prefetch_per_block(kdim: int, shape: TileShape, blocks: int) -> int:
    """Cache lines of the next tile's input each channel block prefetches."""
    lines = -(-shape.width * kdim // 16)
    return -(-lines // max(blocks, 1))


class NchwMicrokernel(Rule):
    name = "nchw_microkernel"
    ops = ("fused_matmul",)
    priority = 10

    def match(self, node: Node, graph: Graph, target: VectorISA) -> NchwSpec:
        a_t, w_t = graph.type_of(node.operands[0]), graph.type_of(node.operands[1])
        if node.attrs["perm"] != NHWC_TO_NCHW:
            raise Unsupported(f"perm {list(node.attrs['perm']) or 'none'}: this rule writes channels-last input "
                              f"to NCHW, perm [0, 3, 1, 2]")
        if a_t.rank != 4:
            raise Unsupported(f"a is {a_t}: expected [batch, height, width, K]")
        if graph[node.operands[1]].op != "const":
            raise Unsupported("b is not a compile-time constant (the weights are packed at compile time)")
        if w_t.rank != 2:
            raise Unsupported(f"b is {w_t}: expected a [K, N] matrix")
        n = w_t.shape[-1]
        shape = choose_tile(target, n)
        batch, height, width_px, kdim = a_t.shape
        if 4 * panel_floats(kdim, shape) > MAX_PANEL_BYTES:
            raise Unsupported(f"K = {kdim} needs a {4 * panel_floats(kdim, shape) >> 10} KiB pixel panel; "
                              f"this rule's limit is {MAX_PANEL_BYTES >> 10} KiB")
        steps = lower_steps(node.attrs["epilogue"], node, graph, first=2)
        elementwise = next((st.op for st in steps for o in st.operands if o.access.kind == "elementwise"), None)
        if elementwise:
            raise Unsupported(f"epilogue step {elementwise} reads a whole tensor; this rule's epilogue reads "
                              f"biases and upsampled levels")
        bias_init = -1
        if steps and steps[0].op == "bias_add" and steps[0].attributes["axis"] % 4 == 1:
            bias_init, steps = steps[0].operands[0].index, steps[1:]
        out_shape = node.type.shape
        lanes, hw = shape.lanes, height * width_px
        # vectors lie within an image row when W is a multiple of them; only steps that read by
        # position (an upsampled level) care, so only they specialise the body on it
        rows_span = _positional(steps) and width_px % lanes == 0
        vector = vector_refusal(steps, out_shape, (3,) if width_px % lanes == 0 else (2, 3)) is None
        body = Body(shape, n, bias_init, tuple(_shapeless(st) for st in steps), vector_epilogue=vector,
                    rows_span=rows_span, always_full=hw % shape.width == 0, streaming=hw % lanes == 0,
                    k_rest=kdim % UNROLL != 0, k_lanes_rest=kdim % lanes != 0, spread=False)
        blocks, _, _ = body.blocks
        body = replace(body, spread=_prefetch_per_block(kdim, shape, blocks) <= loop_iterations(kdim))
        return NchwSpec(extent=batch * tile_count(hw, shape), cost=2 * kdim * n * shape.width,
                        operands=len(node.operands), constants=1, body=body, batch=batch, height=height,
                        width=width_px, k=kdim, out_bytes=4 * node.type.numel)

    def constants(self, spec: NchwSpec, node: Node, graph: Graph):
        w = graph[node.operands[1]].value
        _, _, overlap = spec.body.blocks
        return (pack_panels(w.reshape(spec.k, spec.body.n), spec.body.shape.rows, "overlap" if overlap else "short"),)

    def emit(self, spec: NchwSpec, k: KernelBuilder) -> None:
        body = spec.body
        fn = k.shared_function(body.name, body.params(), lambda f: _emit_body(f, body))
        # the pixel panel lives in this kernel's frame, sized for its K
        panel = k.alloca(F32, panel_floats(spec.k, body.shape), "panel")
        args = [k.out, k.ins[0], k.consts[0]] + [k.ins[i] for i in body.operand_indices] + [panel]
        args += [k.i64(a) for a in (k.lo, k.hi, spec.k, spec.height, spec.width)]
        if body.streaming:
            # streaming stores need every vector aligned to its size, which holds when the output
            # array is (planes start on a vector boundary: H*W % lanes == 0); checked on every call
            guard = streaming_guard(k, k.out, spec.out_bytes, body.shape.lanes)
            args.append(guard if guard is not None else ir.Constant(I1, 0))
        k.b.call(fn, args)


def _positional(steps: tuple[LoweredStep, ...]) -> bool:
    """Whether some step reads an operand by a pixel's row and column (an upsampled level, a bias
    along H or W), rather than by image and channel alone."""
    return any(o.access.kind != "axis" or st.mode(o.access) % 4 >= 2 for st in steps for o in st.operands)


def _shapeless(step: LoweredStep) -> LoweredStep:
    """The step as a shared body sees it: its operands' shapes are run-time arguments."""
    return replace(step, operands=tuple(replace(o, shape=()) for o in step.operands))


def _emit_body(f: FunctionBuilder, v: Body) -> None:
    """for t in [lo, hi): pack tile t's pixels, then every channel block's register tile and
    epilogue. Depends only on `v` (it is shared by every kernel of that body)."""
    a = {arg.name: arg for arg in f.fn.args}
    b = f.b
    shape = v.shape
    lanes, vecs, tw, rows = shape.lanes, shape.vecs, shape.width, shape.rows
    blocks, rest, overlap = v.blocks
    n = v.n
    kdim, height, width_px = a["K"], a["H"], a["W"]
    x, wpack, panel, out = a["x"], a["wpack"], a["panel"], a["out"]
    bias = a[f"e{v.bias_init}"] if v.bias_init >= 0 else None
    hw = f.mul(height, width_px)
    tiles = f.ceil_div(hw, tw)
    views = {o.index: _view(f, o, a[f"e{o.index}"], n, height, width_px) for st in v.steps for o in st.operands}
    positional = _positional(v.steps)
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
        vectors = None
        if v.vector_epilogue:                               # the epilogue at each vector of the tile
            fixed = [{} for _ in range(vecs)]             # lane 0's row and column, where a step needs them
            if positional:
                for i in range(vecs):
                    p = f.add(p0, i * lanes)
                    fixed[i] = {2: f.div(p, width_px), 3: f.rem(p, width_px)}
            span = (3,) if v.rows_span else (2, 3)
            vectors = [VectorSteps(f, v.steps, views, lanes, 4, span, fixed[i]) for i in range(vecs)]

        def block(channel0: Int, nrows: int, weights_at: Int, fetch=None) -> None:
            init = splat_rows(f, bias, channel0, nrows, shape) if bias is not None else \
                [[zero(lanes)] * vecs for _ in range(nrows)]
            acc = register_tile(
                f, kdim, shape, nrows, init,
                scalar=lambda kk, r: f.load(wpack, f.add(weights_at, f.add(f.mul(kk, nrows), r))),
                vector=lambda kk, i: vload(f, panel, f.add(f.mul(kk, tw), i * lanes), lanes, align=lanes * 4),
                each_iteration=fetch, remainder=v.k_rest)

            def vector_store() -> None:
                stores = []
                for r in range(nrows):
                    channel = f.add(channel0, r)
                    plane = f.add(plane0, channel)
                    for i in range(vecs):
                        val = vectors[i].apply(acc[r][i], {0: img, 1: channel}, plane)
                        stores.append((val, f.add(f.mul(plane, hw), f.add(p0, i * lanes))))
                store_vectors(f, stores, out, a["stream"] if v.streaming else None)

            def scalar_store() -> None:
                for r in range(nrows):
                    for i in range(vecs):
                        vstore(f, acc[r][i], spill, r * tw + i * lanes, align=lanes * 4)
                count = f.min(tw, f.sub(hw, p0))
                with f.loop(0, nrows, name="r") as r:
                    channel = f.add(channel0, r)
                    plane = f.add(plane0, channel)
                    with f.loop(0, count, name="j") as j:
                        p = f.add(p0, j)
                        val = f.load(spill, f.add(f.mul(r, tw), j))
                        coords = [img, channel, f.div(p, width_px), f.rem(p, width_px)] if positional else \
                            [img, channel, 0, 0]
                        val = apply_scalar(f, v.steps, val, coords, views, plane)
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


def _view(f: FunctionBuilder, o, ptr: ir.Value, n: int, height: Int, width: Int) -> View:
    """An epilogue operand inside the body, whose shapes are run-time: a bias over the channels,
    or a coarse level of half the height and width (addressed by plane)."""
    if o.access.kind == "axis":
        return View(ptr, (n,))
    if o.access.kind == "upsample2x":
        return View(ptr, (f.div(height, 2), f.div(width, 2)))
    raise AssertionError(f"the NCHW body reads no {o.access.kind} operand")
