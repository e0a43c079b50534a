"""Arithmetic that works on a float and on a vector of floats alike, and the registry of the
pointwise ops' emitters written with it.

A pointwise op's emitter computes its result from its operands' values, already read (by the op's
Accesses, see `epilogue`): `fn(v, x, *operands, **attrs)`, where `x` and the operands are all
floats or all `<N x float>` vectors and `v` is a `Values`. Because the same emitter serves both,
one emitter lets an op run in the pointwise loop, in every matmul epilogue, scalar or vectorised.

    @emitter("scale")
    def scale(v, x, *, factor):
        return v.mul(x, v.const(factor, x))
"""

from __future__ import annotations

from typing import Callable

import llvmlite.ir as ir

from .builder import F32, FunctionBuilder

Emitter = Callable[..., ir.Value]
EMITTERS: dict[str, Emitter] = {}


def emitter(op: str) -> Callable[[Emitter], Emitter]:
    """Register `fn` as the emitter of pointwise op `op`."""
    def register(fn: Emitter) -> Emitter:
        if op in EMITTERS:
            raise ValueError(f"two emitters for op '{op}'")
        EMITTERS[op] = fn
        return fn
    return register


class Values:
    """Float or vector arithmetic on one `FunctionBuilder`. No fast-math flags: each operation
    rounds as IEEE float32 does, as the interpreter's numpy rule does."""

    def __init__(self, f: FunctionBuilder):
        self.f = f
        self.b = f.b

    @staticmethod
    def const(value: float, like: ir.Value) -> ir.Constant:
        """`value` as a float32, or splat over `like`'s lanes."""
        scalar = FunctionBuilder.f32(value)
        if isinstance(like.type, ir.VectorType):
            return ir.Constant(like.type, [scalar] * like.type.count)
        return scalar

    def add(self, a: ir.Value, b: ir.Value) -> ir.Value:
        return self.b.fadd(a, b)

    def sub(self, a: ir.Value, b: ir.Value) -> ir.Value:
        return self.b.fsub(a, b)

    def mul(self, a: ir.Value, b: ir.Value) -> ir.Value:
        return self.b.fmul(a, b)

    def div(self, a: ir.Value, b: ir.Value) -> ir.Value:
        return self.b.fdiv(a, b)

    def neg(self, a: ir.Value) -> ir.Value:
        return self.b.fneg(a)

    def less(self, a: ir.Value, b: ir.Value) -> ir.Value:
        """a < b, false when either is NaN."""
        return self.b.fcmp_ordered("<", a, b)

    def select(self, cond: ir.Value, a: ir.Value, b: ir.Value) -> ir.Value:
        return self.b.select(cond, a, b)

    def fma(self, a: ir.Value, b: ir.Value, c: ir.Value) -> ir.Value:
        """a * b + c with one rounding."""
        return self.b.call(self.f.intrinsic("llvm.fma", a.type, 3), [a, b, c])

    def intrinsic(self, name: str, *args: ir.Value) -> ir.Value:
        """An LLVM intrinsic overloaded on the operands' type, e.g. `intrinsic("llvm.sqrt", x)`."""
        return self.b.call(self.f.intrinsic(name, args[0].type, len(args)), list(args))


def is_vector(value: ir.Value) -> bool:
    return isinstance(value.type, ir.VectorType)


__all__ = ["EMITTERS", "F32", "Values", "emitter", "is_vector"]
