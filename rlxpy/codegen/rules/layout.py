"""Lowerings of the layout ops: a transpose as a blocked copy, a view (reshape) as an alias."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...ir.graph import Graph, Node
from ...ir.ops import VIEW
from ..emit.builder import KernelBuilder, row_major_strides
from ..isa import VectorISA
from ..rule import Alias, Rule, Spec


def coalesce(shape: tuple[int, ...], perm: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The same transpose on fewer axes: size-1 axes dropped, runs of axes that stay adjacent merged.

    (B, H, W, C) with perm (0, 3, 1, 2) becomes (B, H*W, C) with perm (0, 2, 1).
    """
    kept = [p for p in perm if shape[p] != 1]
    if not kept:
        return (1,), (0,)
    in_axes = sorted(kept)
    renumber = {ax: i for i, ax in enumerate(in_axes)}
    groups: list[list[int]] = []
    for ax in (renumber[p] for p in kept):
        if groups and groups[-1][-1] + 1 == ax:
            groups[-1].append(ax)
        else:
            groups.append([ax])
    by_input = sorted(range(len(groups)), key=lambda g: groups[g][0])
    in_shape = tuple(math.prod(shape[in_axes[a]] for a in groups[g]) for g in by_input)
    new_perm = tuple(by_input.index(g) for g in range(len(groups)))
    return in_shape, new_perm


# Input rows moved together by the blocked transpose. On a [65536, 256] -> [256, 65536] transpose
# here: 8 rows 68 ms, 16 rows 39 ms, 32 rows 30 ms, 64 rows 91 ms (numpy's copy: 137 ms).
STRIP = 32


@dataclass(frozen=True, kw_only=True)
class TransposeSpec(Spec):
    shape: tuple[int, ...]           # the operand's, coalesced
    perm: tuple[int, ...]


class Transpose(Rule):
    name = "transpose"
    ops = ("transpose",)

    def match(self, node: Node, graph: Graph, target: VectorISA) -> TransposeSpec:
        shape, perm = coalesce(graph.type_of(node.operands[0]).shape, node.attrs["perm"])
        out_shape = tuple(shape[p] for p in perm)
        if len(perm) == 1:                                  # nothing moves: a copy
            return TransposeSpec(extent=shape[0], cost=1, operands=1, shape=shape, perm=perm)
        q = tuple(row_major_strides(shape)[p] for p in perm).index(1)
        last = len(out_shape) - 1
        if q == last:                                       # rows stay contiguous: copy row by row
            return TransposeSpec(extent=math.prod(out_shape[:-1]), cost=out_shape[last], operands=1,
                                 shape=shape, perm=perm)
        others = [j for j in range(last) if j != q]
        strips = -(-out_shape[q] // STRIP)
        return TransposeSpec(extent=math.prod(out_shape[j] for j in others) * strips, cost=STRIP * out_shape[last],
                             operands=1, shape=shape, perm=perm)

    def emit(self, spec: TransposeSpec, k: KernelBuilder) -> None:
        in_shape, perm = spec.shape, spec.perm
        x, = k.ins
        if len(perm) == 1:
            with k.parallel_loop() as i:
                k.store(k.load(x, i), k.out, i)
            return
        in_strides = row_major_strides(in_shape)
        out_shape = tuple(in_shape[p] for p in perm)
        out_strides = row_major_strides(out_shape)
        read_strides = tuple(in_strides[p] for p in perm)   # input stride of each output axis
        last = len(out_shape) - 1
        q = read_strides.index(1)                           # the output axis the input's last axis became
        if q == last:
            with k.parallel_loop() as r:
                src = k.dot(k.unflatten(r, out_shape[:-1]), read_strides[:-1])
                dst = k.mul(r, out_shape[last])
                with k.loop(0, out_shape[last], name="t") as t:
                    k.store(k.load(x, k.add(src, t)), k.out, k.add(dst, t))
            return
        # Blocked: a parallel iteration moves STRIP consecutive input rows (output axis q) across the
        # whole output row axis, reading STRIP contiguous floats per step and writing STRIP output rows
        # in lockstep; row-at-a-time reads with a large stride would load a cache line per element.
        others = [j for j in range(last) if j != q]
        strips = -(-out_shape[q] // STRIP)
        with k.parallel_loop() as p:
            c = k.unflatten(k.div(p, strips), [out_shape[j] for j in others])
            q0 = k.mul(k.rem(p, strips), STRIP)
            width = k.min(STRIP, k.sub(out_shape[q], q0))
            src = k.add(k.dot(c, [read_strides[j] for j in others]), q0)
            dst = k.add(k.dot(c, [out_strides[j] for j in others]), k.mul(q0, out_strides[q]))
            with k.loop(0, out_shape[last], name="t") as t:
                row_src = k.add(src, k.mul(t, read_strides[last]))
                row_dst = k.add(dst, t)
                with k.loop(0, width, name="s") as s:
                    k.store(k.load(x, k.add(row_src, s)), k.out, k.add(row_dst, k.mul(s, out_strides[q])))


class View(Rule):
    """A view keeps row-major order: the result is the operand's buffer under the new shape."""

    name = "view"
    trait = VIEW

    def match(self, node: Node, graph: Graph, target: VectorISA) -> Alias:
        return Alias(0)
