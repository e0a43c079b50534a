"""pos_encoding: SAM 2's sine position encoding, computed in double precision like the interpreter.

Channel ch < dim/2 encodes the row, the others the column; within each half, channel 2j is a sine
and 2j+1 a cosine of position / dim_t[k]. The divisors dim_t are computed here with the
interpreter's own expression from the Spec's fields and baked into the module as a table of
doubles; llvm.sin/llvm.cos call the C library, and the result is rounded to float32 once, as the
interpreter does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...ir.graph import Graph, Node
from ..emit.builder import F32, F64, I1, KernelBuilder
from ..isa import VectorISA
from ..rule import Rule, Spec


@dataclass(frozen=True, kw_only=True)
class PosEncodingSpec(Spec):
    batch: int
    dim: int
    height: int
    width: int
    temperature: float


class PosEncoding(Rule):
    name = "pos_encoding"
    ops = ("pos_encoding",)

    def match(self, node: Node, graph: Graph, target: VectorISA) -> PosEncodingSpec:
        a = node.attrs
        return PosEncodingSpec(extent=a["batch"] * a["dim"], cost=a["height"] * a["width"], operands=0,
                               batch=a["batch"], dim=a["dim"], height=a["height"], width=a["width"],
                               temperature=a["temperature"])

    def emit(self, spec: PosEncodingSpec, k: KernelBuilder) -> None:
        _emit(spec, k)


def _emit(spec: PosEncodingSpec, k: KernelBuilder) -> None:
    dim, height, width = spec.dim, spec.height, spec.width
    feats = dim // 2
    kk = np.arange(feats)
    dim_t = spec.temperature ** (2 * (kk // 2) / feats)        # as in interp.sine_position_encoding
    b = k.b
    table = k.table("dim_t", F64, dim_t.tolist())
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
