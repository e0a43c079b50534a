"""`FunctionBuilder` and `KernelBuilder`: what a rule writes a kernel with, on top of `llvmlite.ir`.

Every kernel has the signature

    void @symbol(float* noalias out, float* noalias operand..., float* noalias constant...,
                 i64 begin, i64 end)

with shapes baked in as constants. It computes the iterations [begin, end) of its outermost
parallel loop, clamped to [0, extent), so a runtime may split that loop across threads and a bad
range can never index out of bounds. No kernel writes into its operands. A kernel may call a
function it shares with other kernels of the module (`shared_function`: built once, e.g. a body
that takes the shapes as arguments), which keeps the module small when several nodes differ only
in shapes. `FunctionBuilder` holds what any function of the module is written with.

Integer helpers (`add`, `mul`, `div`, `rem`, ...) take Python ints or IR values and fold constants
in Python, so the IR a rule emits stays small and readable. Loops are emitted rotated (guard, body,
latch) with an `i64` phi, the canonical form LLVM's loop passes expect.

No kernel uses fast-math flags: reductions (the matmul's k loop) run in a fixed order, and
`llvm.fmuladd` lets the target fuse a multiply-add where it has FMA, which only removes a rounding.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager
from typing import Callable, Iterator, Sequence, Union

import llvmlite.ir as ir
import numpy as np


F32 = ir.FloatType()
F64 = ir.DoubleType()
I64 = ir.IntType(64)
I1 = ir.IntType(1)
VOID = ir.VoidType()
FLOAT_PTR = F32.as_pointer()

Int = Union[int, ir.Value]
POINTER_ATTRS = ("noalias", "nonnull", "noundef", "captures(none)")


def row_major_strides(shape: Sequence[int]) -> tuple[int, ...]:
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= d
    return tuple(reversed(strides))


class FunctionBuilder:
    """Emits one LLVM function of a module: loops, folding integer helpers, memory, intrinsics."""

    def __init__(self, module: ir.Module | None, fn: ir.Function | None = None):
        self.module = module
        self.fn = fn
        self.b: ir.IRBuilder | None = ir.IRBuilder(fn.append_basic_block("entry")) if fn is not None else None

    def shared_function(self, name: str, params: Sequence[tuple[str, ir.Type]],
                        build: Callable[["FunctionBuilder"], None]) -> ir.Function:
        """The module's function `name(params...)`, emitted by `build` the first time it is asked
        for; later callers get the same function, so kernels of one module share its code. `build`
        gets a builder in its entry block (arguments named as in `params`) and must depend on
        nothing that `name` does not spell out. Pointer arguments are noalias like a kernel's;
        internal linkage, so LLVM may still inline it into a single caller."""
        existing = self.module.globals.get(name)
        if existing is not None:
            return existing
        fn = ir.Function(self.module, ir.FunctionType(VOID, [t for _, t in params]), name)
        fn.linkage = "internal"
        fn.attributes.add("nounwind")
        fn.attributes.add("norecurse")
        for arg, (arg_name, ty) in zip(fn.args, params):
            arg.name = arg_name
            if isinstance(ty, ir.PointerType):
                for attr in POINTER_ATTRS:
                    arg.add_attribute(attr)
        f = FunctionBuilder(self.module, fn)
        build(f)
        f.b.ret_void()
        return fn

    # -- loops -------------------------------------------------------------------------------------

    @contextmanager
    def loop(self, start: Int, stop: Int, step: int = 1, name: str = "i") -> Iterator[ir.Value]:
        """`for i in range(start, stop, step)` (step > 0); the body is emitted inside the `with`."""
        b = self.b
        start, stop = self.i64(start), self.i64(stop)
        body = self.fn.append_basic_block(f"{name}.body")
        done = self.fn.append_basic_block(f"{name}.done")
        before = b.block
        b.cbranch(b.icmp_signed("<", start, stop), body, done)
        b.position_at_end(body)
        i = b.phi(I64, name=name)
        i.add_incoming(start, before)
        yield i
        nxt = b.add(i, self.i64(step), name=f"{name}.next", flags=["nsw"])
        i.add_incoming(nxt, b.block)
        b.cbranch(b.icmp_signed("<", nxt, stop), body, done)
        b.position_at_end(done)

    # -- integers (Python ints fold) -------------------------------------------------------------

    @staticmethod
    def i64(v: Int) -> ir.Value:
        return ir.Constant(I64, int(v)) if isinstance(v, (int, np.integer)) else v

    def add(self, a: Int, b: Int) -> Int:
        if isinstance(a, int) and isinstance(b, int):
            return a + b
        if isinstance(a, int) and a == 0:
            return b
        if isinstance(b, int) and b == 0:
            return a
        return self.b.add(self.i64(a), self.i64(b), flags=["nsw"])

    def sub(self, a: Int, b: Int) -> Int:
        if isinstance(a, int) and isinstance(b, int):
            return a - b
        if isinstance(b, int) and b == 0:
            return a
        return self.b.sub(self.i64(a), self.i64(b), flags=["nsw"])

    def mul(self, a: Int, b: Int) -> Int:
        if isinstance(a, int) and isinstance(b, int):
            return a * b
        if isinstance(a, int):
            a, b = b, a
        if isinstance(b, int):
            if b == 0:
                return 0
            if b == 1:
                return a
        return self.b.mul(self.i64(a), self.i64(b), flags=["nsw"])

    def div(self, a: Int, d: Int) -> Int:
        """a // d for a >= 0 and d > 0."""
        if isinstance(a, int) and isinstance(d, int):
            return a // d
        if isinstance(d, int) and d == 1:
            return a
        return self.b.udiv(self.i64(a), self.i64(d))

    def rem(self, a: Int, d: Int) -> Int:
        """a % d for a >= 0 and d > 0."""
        if isinstance(a, int) and isinstance(d, int):
            return a % d
        if isinstance(d, int) and d == 1:
            return 0
        return self.b.urem(self.i64(a), self.i64(d))

    def ceil_div(self, a: Int, d: Int) -> Int:
        """ceil(a / d) for a >= 0 and d > 0."""
        return self.div(self.add(a, self.sub(d, 1)), d)

    def min(self, a: Int, b: Int) -> Int:
        if isinstance(a, int) and isinstance(b, int):
            return min(a, b)
        a, b = self.i64(a), self.i64(b)
        return self.b.select(self.b.icmp_signed("<", a, b), a, b)

    def max(self, a: Int, b: Int) -> Int:
        if isinstance(a, int) and isinstance(b, int):
            return max(a, b)
        a, b = self.i64(a), self.i64(b)
        return self.b.select(self.b.icmp_signed(">", a, b), a, b)

    def unflatten(self, flat: Int, dims: Sequence[int]) -> list[Int]:
        """Row-major coordinates of `flat` in an array of shape `dims` (size-1 axes give 0)."""
        coords: list[Int] = []
        for d, stride in zip(dims, row_major_strides(dims)):
            coords.append(0 if d == 1 else self.rem(self.div(flat, stride), d))
        return coords

    def dot(self, coords: Sequence[Int], strides: Sequence[int]) -> Int:
        """sum(coord * stride): an element offset."""
        total: Int = 0
        for c, s in zip(coords, strides):
            total = self.add(total, self.mul(c, s))
        return total

    # -- floats and memory -----------------------------------------------------------------------

    @staticmethod
    def f32(v: float) -> ir.Constant:
        return ir.Constant(F32, float(np.float32(v)))

    @staticmethod
    def f64(v: float) -> ir.Constant:
        return ir.Constant(F64, float(v))

    def ptr(self, base: ir.Value, offset: Int) -> ir.Value:
        return self.b.gep(base, [self.i64(offset)], inbounds=True)

    def load(self, base: ir.Value, offset: Int) -> ir.Value:
        return self.b.load(self.ptr(base, offset), align=4)

    def store(self, value: ir.Value, base: ir.Value, offset: Int) -> None:
        self.b.store(value, self.ptr(base, offset), align=4)

    def intrinsic(self, name: str, ty: ir.Type, arity: int = 1) -> ir.Function:
        """The overloaded intrinsic `name` on type `ty` (e.g. llvm.sin.f64), declared once."""
        suffix = {F32: "f32", F64: "f64"}.get(ty) or f"v{ty.count}f32"
        full = f"{name}.{suffix}"
        existing = self.module.globals.get(full)
        if existing is not None:
            return existing
        return ir.Function(self.module, ir.FunctionType(ty, [ty] * arity), name=full)

    def fmuladd(self, a: ir.Value, b: ir.Value, c: ir.Value) -> ir.Value:
        """a * b + c, fused where the target has FMA (llvm.fmuladd: no fast-math flag needed)."""
        return self.b.call(self.intrinsic("llvm.fmuladd", a.type, 3), [a, b, c])

    def alloca(self, ty: ir.Type, count: int, name: str) -> ir.Value:
        """A stack buffer in the entry block (allocated once per call, not per iteration)."""
        with self.b.goto_entry_block():
            slot = self.b.alloca(ir.ArrayType(ty, count), name=name)
            slot.align = 64
            first = self.b.gep(slot, [self.i64(0), self.i64(0)], inbounds=True)
        return first


class KernelBuilder(FunctionBuilder):
    """Builds one kernel of the module: the function is created at once, with the signature

        void @symbol(float* out, float* operand..., float* constant..., i64 begin, i64 end)

    and `lo`, `hi` the call's share of [0, extent), clamped so a bad range never indexes out of
    bounds. A rule's `emit` writes the body; the backend closes the function.
    """

    def __init__(self, module: ir.Module, symbol: str, operands: int, constants: int, extent: int):
        fnty = ir.FunctionType(VOID, [FLOAT_PTR] * (1 + operands + constants) + [I64, I64])
        fn = ir.Function(module, fnty, symbol)
        fn.attributes.add("nounwind")
        fn.attributes.add("norecurse")
        names = ["out"] + [f"in{i}" for i in range(operands)] + [f"c{i}" for i in range(constants)] + ["begin", "end"]
        for arg, name in zip(fn.args, names):
            arg.name = name
        for arg in fn.args[:-2]:
            for attr in POINTER_ATTRS:
                arg.add_attribute(attr)
        super().__init__(module, fn)
        self.symbol = symbol
        self.extent = int(extent)
        self.out = fn.args[0]
        self.ins = list(fn.args[1:1 + operands])
        self.consts = list(fn.args[1 + operands:1 + operands + constants])
        begin, end = fn.args[-2], fn.args[-1]
        self.lo = self.max(begin, 0)
        self.hi = self.min(end, self.extent)

    def parallel_loop(self, step: int = 1, name: str = "p") -> AbstractContextManager[ir.Value]:
        """The outermost loop over this call's share [begin, end) of [0, extent)."""
        return self.loop(self.lo, self.hi, step, name)

    def table(self, name: str, ty: ir.Type, values: Sequence[float]) -> ir.Value:
        """`values` as a private constant array of `ty` in the module, as a pointer to its first
        item. The values must come from the kernel's Spec (they are part of the cache key)."""
        arr_ty = ir.ArrayType(ty, len(values))
        gv = ir.GlobalVariable(self.module, arr_ty, name=f"{self.symbol}.{name}")
        gv.initializer = ir.Constant(arr_ty, [ir.Constant(ty, float(v)) for v in values])
        gv.global_constant = True
        gv.linkage = "private"
        return self.b.gep(gv, [self.i64(0), self.i64(0)], inbounds=True)
