"""The register tile's own ceiling: the neck's micro-kernel with every operand in cache.

The FMA floor says what the FMA units could do; this says what the micro-kernel rlxpy generates
(`codegen.emit.register_tile.register_tile`, the same tile shape and k loop the neck's kernels run) does
when nothing else gets in its way: its pixel panel sits in L1, its weight panels in L2, and its
results go to a small buffer in cache. No packing, no upsampling, no streaming stores, no memory
traffic, no threads joining. The gap between this row and the floor is the tile itself on this
core (on the AVX-512 Xeon the README quotes, a loop of FMAs whose two operands are both loaded ran
at ~0.91 of the FMA peak in hand-written assembly, against 1.0 with either operand held in a
register); the gap between the neck and this row is everything around the tile.

`held="pixels"` builds a variant that loads the pixel vectors once per block and reuses them for
every k (the wrong product, the same FMAs): what the tile loses to its loads. (Holding the weights
instead would need 6 more registers than the 32 there are, so LLVM would spill.)
`python benchmarks/tile_operands.py` prints both against the FMA peak.

The kernel is shaped like the neck's largest level: panels of K = 112 channels by one tile of
pixels, one weight panel per block of `rows` output channels, N = 256 channels. Each pass over the
blocks starts its accumulators from the previous pass's results, so every pass depends on the one
before and no pass can be optimised away: after `passes` passes from zero, out = passes * (W x P).
"""

from __future__ import annotations

import ctypes
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import llvmlite.ir as ir
import numpy as np

from ..codegen.emit.builder import FLOAT_PTR, I64, VOID, FunctionBuilder
from ..codegen.isa import host_isa
from ..codegen.jit import CompiledModule, compile_module
from ..codegen.emit.register_tile import TileShape, choose_tile, register_tile
from ..codegen.runtime import aligned_empty
from ..codegen.emit.simd import vload, vstore
from ..codegen.target import host

K = 112                        # the neck's level-0 K (base_plus): its panel fits L1
N = 256                        # the neck's output channels
SYMBOL = "tile_ceiling"
KernelType = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


HELD = ("none", "pixels")


def _module(shape: TileShape, blocks: int, held: str) -> str:
    """void tile_ceiling(float* panel, float* weights, float* out, i64 passes)."""
    m = ir.Module(name="tile_ceiling")
    m.triple = host().triple
    fn = ir.Function(m, ir.FunctionType(VOID, [FLOAT_PTR] * 3 + [I64]), SYMBOL)
    panel, weights, out, passes = fn.args
    for a, name in zip(fn.args, ("panel", "weights", "out", "passes")):
        a.name = name
    for a in (panel, weights, out):
        a.add_attribute("noalias")
    f = FunctionBuilder(m, fn)
    rows, vecs, lanes, width = shape.rows, shape.vecs, shape.lanes, shape.width
    with f.loop(0, passes, name="pass"):
        with f.loop(0, blocks, name="blk") as blk:
            tile = f.mul(blk, rows * width)                 # this block's results in `out`
            init = [[vload(f, out, f.add(tile, r * width + v * lanes), lanes, align=lanes * 4)
                     for v in range(vecs)] for r in range(rows)]
            wblock = f.mul(blk, K * rows)

            def scalar(kk, r):
                return f.load(weights, f.add(wblock, f.add(f.mul(kk, rows), r)))

            def vector(kk, v):
                return vload(f, panel, f.add(f.mul(kk, width), v * lanes), lanes, align=lanes * 4)
            if held == "pixels":                            # k = 0's pixels for every k
                first = [vector(0, v) for v in range(vecs)]
                vector = lambda kk, v: first[v]             # noqa: E731
            acc = register_tile(f, K, shape, rows, init, scalar=scalar, vector=vector)
            for r in range(rows):
                for v in range(vecs):
                    vstore(f, acc[r][v], out, f.add(tile, r * width + v * lanes), align=lanes * 4)
    f.b.ret_void()
    return str(m)


@dataclass
class TileCeiling:
    """The compiled ceiling kernel with its operands; `run` times a job of a given flop count."""

    shape: TileShape
    blocks: int
    held: str
    module: CompiledModule
    panel: np.ndarray                                      # [K][width]
    weights: np.ndarray                                    # blocks x [K][rows]
    _fn: object = field(repr=False)

    @property
    def flops_per_pass(self) -> float:
        return 2.0 * K * self.blocks * self.shape.rows * self.shape.width

    def new_out(self) -> np.ndarray:
        """A result buffer (one per thread: each writes its own) starting at zero."""
        out = aligned_empty((self.blocks * self.shape.rows * self.shape.width,))
        out[:] = 0.0
        return out

    def call(self, out: np.ndarray, passes: int) -> None:
        """`passes` passes over every block, accumulating into `out` (from `new_out`)."""
        size = self.blocks * self.shape.rows * self.shape.width
        if not (isinstance(out, np.ndarray) and out.dtype == np.float32 and out.flags.c_contiguous
                and out.size == size and out.ctypes.data % 64 == 0):
            raise ValueError(f"tile ceiling: out must be a 64-byte aligned, contiguous float32 array of "
                             f"{size} floats (new_out makes one); got {getattr(out, 'dtype', type(out).__name__)} "
                             f"with {getattr(out, 'size', '?')} elements")
        if passes < 0:
            raise ValueError(f"tile ceiling: passes must be >= 0, got {passes}")
        self._fn(self.panel.ctypes.data, self.weights.ctypes.data, out.ctypes.data, passes)

    def reference(self, passes: int) -> np.ndarray:
        """What `call` leaves in a zeroed `out` after `passes` passes (float64 numpy)."""
        s = self.shape
        w = self.weights.reshape(self.blocks, K, s.rows).astype(np.float64)
        p = self.panel.reshape(K, s.width).astype(np.float64)
        if self.held == "pixels":
            p = np.broadcast_to(p[:1], p.shape)
        return passes * np.einsum("bkr,kp->brp", w, p).ravel()

    def run(self, flops: float, threads: int = 1, pool: ThreadPoolExecutor | None = None) -> float:
        """Seconds to do `flops` of tile work split over `threads` threads at once (the others
        from `pool`, with threads - 1 workers), each on its own result buffer."""
        if threads > 1 and pool is None:
            raise ValueError("running on several threads needs a pool")
        passes = max(1, round(flops / threads / self.flops_per_pass))
        outs = [self.new_out() for _ in range(threads)]
        start = time.perf_counter()
        futures = [pool.submit(self.call, o, passes) for o in outs[1:]] if threads > 1 else []
        self.call(outs[0], passes)
        for fut in futures:
            fut.result()
        return time.perf_counter() - start


def build(seed: int = 0, held: str = "none") -> TileCeiling:
    """Compile the ceiling kernel for this host's tile shape, with random operands."""
    if held not in HELD:
        raise ValueError(f"held={held!r}: expected one of {', '.join(HELD)}")
    shape = choose_tile(host_isa(), N)
    blocks = N // shape.rows
    module = compile_module("tile_ceiling", _module(shape, blocks, held), (SYMBOL,))
    rng = np.random.default_rng(seed)
    panel = aligned_empty((K * shape.width,))
    panel[:] = rng.uniform(-1, 1, panel.size)
    weights = aligned_empty((blocks * K * shape.rows,))
    weights[:] = rng.uniform(-1, 1, weights.size)
    return TileCeiling(shape, blocks, held, module, panel, weights, KernelType(module.addresses[SYMBOL]))
