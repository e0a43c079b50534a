"""The emitter of every pointwise op: its result from its operands' values, for floats and vectors
alike (see `emit.values`). With its declaration and its interpreter rule, an op's emitter is all it
needs to run in the pointwise loop and in every matmul epilogue."""

from __future__ import annotations

from .emit.values import emitter


@emitter("bias_add")
def bias_add(v, x, bias, *, axis):
    return v.add(x, bias)


@emitter("upsample_add")
def upsample_add(v, x, coarse, *, mode):
    return v.add(x, coarse)


@emitter("scale")
def scale(v, x, *, factor):
    return v.mul(x, v.const(factor, x))


@emitter("relu")
def relu(v, x):
    zero = v.const(0.0, x)
    return v.select(v.less(x, zero), zero, x)         # NaN < 0 is false: NaN stays NaN
