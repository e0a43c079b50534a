"""This machine's FP32 FMA peak, measured with a kernel generated through llvmlite.

The kernel runs `chains` independent chains of `llvm.fma` on `<lanes x float>` vectors: with more
chains in flight than FMA latency x FMA units, nothing waits, so its rate is the core's peak. The
multiplier, the addend and the chains' start values are run-time arguments: with constants, LLVM
proved a chain whose start is a fixed point of its FMA (1.0 * 0.9999999 + 1e-7 rounds to 1.0)
loop-invariant and deleted it, so the kernel did 11 chains' work while 12 were counted and the
floor came out ~9% too fast. The
calibration tries 8-lane vectors (AVX2) and, when the host has AVX-512, 16-lane ones, with several
chain counts, and keeps the fastest. `FmaPeak.run(flops, threads)` then does `flops` worth of FMAs
split over `threads` threads at once (as the kernels under test run), so its time is the FMA floor
of a job of that many flops measured under the same conditions.
"""

from __future__ import annotations

import ctypes
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import llvmlite.ir as ir

from ..codegen.isa import host_isa
from ..codegen.jit import CompiledModule, compile_module
from ..codegen.target import host

CHAINS = (8, 10, 12, 16)
F32 = ir.FloatType()
I64 = ir.IntType(64)


def _module(variants: list[tuple[int, int]]) -> str:
    m = ir.Module(name="fma_peak")
    m.triple = host().triple
    for lanes, chains in variants:
        vt = ir.VectorType(F32, lanes)
        name = f"llvm.fma.v{lanes}f32"
        fma = m.globals.get(name) or ir.Function(m, ir.FunctionType(vt, [vt] * 3), name)
        # (iterations, start, mul, add): chain c starts at start + c
        fn = ir.Function(m, ir.FunctionType(F32, [I64, F32, F32, F32]), f"fma_peak_{lanes}x{chains}")
        entry = fn.append_basic_block("entry")
        loop = fn.append_basic_block("loop")
        done = fn.append_basic_block("done")
        b = ir.IRBuilder(entry)
        n, start, mul1, add1 = fn.args
        mul, add = _splat(b, mul1, lanes), _splat(b, add1, lanes)
        starts = [_splat(b, b.fadd(start, ir.Constant(F32, float(c))), lanes) for c in range(chains)]
        b.branch(loop)
        b.position_at_end(loop)
        i = b.phi(I64)
        i.add_incoming(ir.Constant(I64, 0), entry)
        accs = []
        for c in range(chains):
            p = b.phi(vt)
            p.add_incoming(starts[c], entry)
            accs.append(p)
        new = [b.call(fma, [a, mul, add]) for a in accs]
        for p, v in zip(accs, new):
            p.add_incoming(v, loop)
        nxt = b.add(i, ir.Constant(I64, 1))
        i.add_incoming(nxt, loop)
        b.cbranch(b.icmp_signed("<", nxt, n), loop, done)
        b.position_at_end(done)
        total = new[0]
        for v in new[1:]:
            total = b.fadd(total, v)
        b.ret(b.extract_element(total, ir.Constant(ir.IntType(32), 0)))
    return str(m)


def _splat(b: ir.IRBuilder, x: ir.Value, lanes: int) -> ir.Value:
    v = b.insert_element(ir.Constant(ir.VectorType(F32, lanes), ir.Undefined), x, ir.Constant(ir.IntType(32), 0))
    return b.shuffle_vector(v, v, ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))


# acc = acc * MUL + ADD stays near its start: no overflow, no denormals
START, MUL, ADD = 1.0, 0.9999999, 1e-7
KernelType = ctypes.CFUNCTYPE(ctypes.c_float, ctypes.c_int64, ctypes.c_float, ctypes.c_float, ctypes.c_float)


@dataclass
class FmaPeak:
    """The fastest FMA chain kernel of this host; `per_core` in GFLOP/s."""

    lanes: int
    chains: int
    per_core: float
    module: CompiledModule
    _fn: object

    def describe(self) -> str:
        return f"{self.lanes}-lane FMA x {self.chains} chains, {self.per_core:.1f} GFLOP/s per core"

    def flops_per_call(self, iterations: int) -> float:
        return 2.0 * self.lanes * self.chains * iterations

    def run(self, flops: float, threads: int = 1, pool: ThreadPoolExecutor | None = None) -> float:
        """Seconds to do `flops` of FMAs split over `threads` threads running at once (the other
        threads come from `pool`, which must have threads - 1 workers)."""
        if threads > 1 and pool is None:
            raise ValueError("running on several threads needs a pool")
        iterations = max(1, int(flops / self.flops_per_call(1) / threads))
        start = time.perf_counter()
        if threads == 1:
            self._fn(iterations)
        else:
            futures = [pool.submit(self._fn, iterations) for _ in range(threads - 1)]
            self._fn(iterations)
            for f in futures:
                f.result()
        return time.perf_counter() - start


def _bind(kernel):
    return lambda iterations: kernel(iterations, START, MUL, ADD)


def calibrate(seconds: float = 0.02) -> FmaPeak:
    """Measure every (lanes, chains) variant this host runs on one core and keep the fastest."""
    lanes_options = [8] + ([16] if host_isa().lanes >= 16 else [])
    variants = [(lanes, chains) for lanes in lanes_options for chains in CHAINS]
    symbols = tuple(f"fma_peak_{lanes}x{chains}" for lanes, chains in variants)
    module = compile_module("fma_peak", _module(variants), symbols)
    best = None
    for (lanes, chains), sym in zip(variants, symbols):
        fn = _bind(KernelType(module.addresses[sym]))
        fn(1000)
        iterations = 1 << 16
        while True:                                   # grow to about `seconds` of work
            t = time.perf_counter()
            fn(iterations)
            dt = time.perf_counter() - t
            if dt >= seconds / 4:
                break
            iterations *= 4
        iterations = max(1, int(iterations * seconds / dt))
        rate = 0.0
        for _ in range(3):
            t = time.perf_counter()
            fn(iterations)
            rate = max(rate, 2.0 * lanes * chains * iterations / (time.perf_counter() - t) / 1e9)
        if best is None or rate > best.per_core:
            best = FmaPeak(lanes, chains, rate, module, fn)
    return best
