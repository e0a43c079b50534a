"""pos_encoding: SAM 2's sine position encoding, computed in double precision like the interpreter.

Channel ch < dim/2 encodes the row, the others the column; within each half, channel 2j is a sine
and 2j+1 a cosine of position / dim_t[k]. The divisors dim_t are computed here with the
interpreter's own expression and baked into the module as a table of doubles (declared to
`define` as baked data, so the table is part of the cache key); llvm.sin/llvm.cos call the C
library, and the result is rounded to float32 once, as the interpreter does.
"""

from __future__ import annotations

import math

import numpy as np

from .emit import F32, F64, I1, KernelBuilder
from .registry import Kernel, lowering


@lowering("pos_encoding")
def pos_encoding(k: KernelBuilder) -> Kernel:
    a = k.attrs
    batch, dim, height, width = a["batch"], a["dim"], a["height"], a["width"]
    feats = dim // 2
    kk = np.arange(feats)
    dim_t = a["temperature"] ** (2 * (kk // 2) / feats)       # as in interp.sine_position_encoding
    k.define(extent=batch * dim, baked={"dim_t": dim_t})      # planes (b, ch) of the output
    b = k.b
    table = k.global_table("dim_t", F64)
    sin, cos = k.intrinsic("llvm.sin", F64), k.intrinsic("llvm.cos", F64)

    def encode(index, size, channel):
        """sin or cos (by channel parity) of ((index + 1) / (size + 1e-6) * 2pi) / dim_t[channel]."""
        pos = b.fdiv(b.sitofp(k.i64(k.add(index, 1)), F64), k.f64(size + 1e-6))
        angle = b.fdiv(b.fmul(pos, k.f64(2 * math.pi)), b.load(k.ptr(table, channel), align=8))
        even = b.icmp_unsigned("==", b.trunc(k.i64(channel), I1), I1(0))
        with b.if_else(even) as (then, otherwise):
            with then:
                s = b.call(sin, [angle])
                s_block = b.block
            with otherwise:
                c = b.call(cos, [angle])
                c_block = b.block
        value = b.phi(F64)
        value.add_incoming(s, s_block)
        value.add_incoming(c, c_block)
        return b.fptrunc(value, F32)

    # A row channel is constant along each row, a column channel repeats its first row: one sine
    # or cosine per row or column, not per element.
    with k.parallel_loop(name="plane") as q:
        ch = k.rem(q, dim)
        plane = k.mul(q, height * width)
        encodes_row = b.icmp_signed("<", ch, k.i64(feats))
        with b.if_else(encodes_row) as (then, otherwise):
            with then:
                with k.loop(0, height, name="h") as h:
                    v = encode(h, height, ch)
                    row = k.add(plane, k.mul(h, width))
                    with k.loop(0, width, name="w") as w:
                        k.store(v, k.out, k.add(row, w))
            with otherwise:
                channel = k.sub(ch, feats)
                with k.loop(0, width, name="w") as w:
                    k.store(encode(w, width, channel), k.out, k.add(plane, w))
                with k.loop(1, height, name="h") as h:
                    row = k.add(plane, k.mul(h, width))
                    with k.loop(0, width, name="w") as w:
                        k.store(k.load(k.out, k.add(plane, w)), k.out, k.add(row, w))
    return k.finish(cost=height * width)
