"""Attention: what its kernels share (the problem's geometry, batch offsets, exp) and the rule
every attention node can take, `attention_loop`.

A node is `problems` independent attentions, one per index of the broadcast leading axes: q
[Lq, D], k [Lk, D], v [Lk, Dv] -> out [Lq, Dv], each operand at its own offset (an operand that
broadcasts along an axis has stride 0 there). The vectorised kernels are in `attention_tiled`.

`attention_loop` is the simple, correct kernel for any shape: its parallel loop runs over query
rows (every problem's), and a row takes two passes over the keys with no buffer at all: the first
finds the largest score, the second sums exp(s - max) and the weighted values straight into the
output row, which is divided by that sum at the end (scores are recomputed, not stored).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import llvmlite.ir as ir

from ...ir.graph import Graph, Node
from ...ir.ops.attention import attention_scale
from ..emit.builder import F32, FunctionBuilder, Int, KernelBuilder, row_major_strides
from ..emit.values import Values
from ..isa import VectorISA
from ..rule import Rule, Spec


def exp(f: FunctionBuilder, x: ir.Value) -> ir.Value:
    """exp(x) on a float or a vector, for every attention kernel. For now the llvm.exp intrinsic,
    which LLVM expands to one call of the C library's expf per lane; the one place to switch to a
    vectorised polynomial exp."""
    return Values(f).intrinsic("llvm.exp", x)


@dataclass(frozen=True)
class Geometry:
    """One attention node as `problems` attentions q [lq, d], k [lk, d], v [lk, dv] -> [lq, dv]."""

    batch: tuple[int, ...]           # the result's leading axes (their product: problems)
    lq: int
    lk: int
    d: int
    dv: int
    q_strides: tuple[int, ...]       # element strides of each operand's problem, per batch axis
    k_strides: tuple[int, ...]       # (0 where the operand broadcasts)
    v_strides: tuple[int, ...]
    scale: float

    @property
    def problems(self) -> int:
        return math.prod(self.batch)

    @property
    def flops(self) -> int:
        """Multiply-adds of the two products, counted as two flops each."""
        return 2 * self.problems * self.lq * self.lk * (self.d + self.dv)

    def offsets(self, f: FunctionBuilder, problem: Int) -> tuple[Int, Int, Int]:
        """Where problem `problem`'s q, k and v start."""
        coords = f.unflatten(problem, self.batch)
        return f.dot(coords, self.q_strides), f.dot(coords, self.k_strides), f.dot(coords, self.v_strides)


def geometry(node: Node, graph: Graph) -> Geometry:
    q, k, v = (graph.type_of(o).shape for o in node.operands)
    batch = node.type.shape[:-2]

    def strides(shape: tuple[int, ...]) -> tuple[int, ...]:
        lead = shape[:-2]
        own = row_major_strides(shape)[:-2]
        pad = len(batch) - len(lead)
        return (0,) * pad + tuple(0 if n == 1 else s for n, s in zip(lead, own))

    return Geometry(batch=batch, lq=q[-2], lk=k[-2], d=q[-1], dv=v[-1], q_strides=strides(q),
                    k_strides=strides(k), v_strides=strides(v), scale=attention_scale(node.attrs, q[-1]))


@dataclass(frozen=True, kw_only=True)
class LoopSpec(Spec):
    g: Geometry


class AttentionLoop(Rule):
    name = "attention_loop"
    ops = ("attention",)

    def match(self, node: Node, graph: Graph, target: VectorISA) -> LoopSpec:
        g = geometry(node, graph)
        return LoopSpec(extent=g.problems * g.lq, cost=2 * g.lk * (2 * g.d + g.dv), operands=3, g=g)

    def emit(self, spec: LoopSpec, k: KernelBuilder) -> None:
        g = spec.g
        b = k.b
        q, key, val = k.ins
        scale = k.f32(g.scale)

        def score(q_row: Int, k_row: Int) -> ir.Value:
            acc = k.alloca(F32, 1, "dot")
            b.store(k.f32(0.0), acc)
            with k.loop(0, g.d, name="d") as d:
                b.store(k.fmuladd(k.load(q, k.add(q_row, d)), k.load(key, k.add(k_row, d)), b.load(acc)), acc)
            return b.fmul(b.load(acc), scale)

        largest = k.alloca(F32, 1, "max")
        total = k.alloca(F32, 1, "sum")
        with k.parallel_loop(name="row") as row:
            problem, i = k.div(row, g.lq), k.rem(row, g.lq)
            q0, k0, v0 = g.offsets(k, problem)
            q_row = k.add(q0, k.mul(i, g.d))
            out_row = k.mul(row, g.dv)
            b.store(k.f32(-math.inf), largest)
            with k.loop(0, g.lk, name="j") as j:
                s = score(q_row, k.add(k0, k.mul(j, g.d)))
                m = b.load(largest)
                b.store(b.select(b.fcmp_ordered(">", s, m), s, m), largest)
            with k.loop(0, g.dv, name="e") as e:
                k.store(k.f32(0.0), k.out, k.add(out_row, e))
            b.store(k.f32(0.0), total)
            m = b.load(largest)
            with k.loop(0, g.lk, name="j") as j:
                p = exp(k, b.fsub(score(q_row, k.add(k0, k.mul(j, g.d))), m))
                b.store(b.fadd(b.load(total), p), total)
                v_row = k.add(v0, k.mul(j, g.dv))
                with k.loop(0, g.dv, name="e") as e:
                    at = k.add(out_row, e)
                    k.store(k.fmuladd(p, k.load(val, k.add(v_row, e)), k.load(k.out, at)), k.out, at)
            t = b.load(total)
            with k.loop(0, g.dv, name="e") as e:
                at = k.add(out_row, e)
                k.store(b.fdiv(k.load(k.out, at), t), k.out, at)
