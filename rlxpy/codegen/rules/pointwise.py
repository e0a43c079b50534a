"""The rule for any pointwise node: a loop over the result, its op's emitter applied to each element.

The parallel loop runs over rows of the result's last axis; each row's coordinates are computed
once, and the inner loop over the row reads each operand through its op's Access (the value
itself elementwise, a bias along an axis, a coarse level upsampled) and applies the emitter, a
simple loop that LLVM's vectoriser widens where the reads allow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...ir.graph import Graph, Node
from ...ir.ops import POINTWISE
from ..emit.builder import KernelBuilder
from ..emit.epilogue import LoweredStep, StepOperand, View, apply_scalar, node_step, read_scalar
from ..isa import VectorISA
from ..rule import Rule, Spec


@dataclass(frozen=True, kw_only=True)
class PointwiseSpec(Spec):
    shape: tuple[int, ...]             # the result's
    value: StepOperand                 # the first operand (the value the op acts on)
    step: LoweredStep


class PointwiseLoop(Rule):
    name = "pointwise_loop"
    trait = POINTWISE

    def match(self, node: Node, graph: Graph, target: VectorISA) -> PointwiseSpec:
        shape = node.type.shape
        step = node_step(node, graph)
        value = StepOperand(0, step_access(node), graph.type_of(node.operands[0]).shape)
        width = shape[-1] if shape else 1
        return PointwiseSpec(extent=math.prod(shape[:-1]), cost=width * (1 + len(step.operands)),
                             operands=len(node.operands), shape=shape, value=value, step=step)

    def emit(self, spec: PointwiseSpec, k: KernelBuilder) -> None:
        shape = spec.shape
        width = shape[-1] if shape else 1
        views = {o.index: View(k.ins[o.index], o.shape) for o in (spec.value,) + spec.step.operands}
        with k.parallel_loop(name="row") as row:
            lead = k.unflatten(row, shape[:-1])
            base = k.mul(row, width)
            with k.loop(0, width, name="j") as j:
                coords = lead + [j] if shape else []
                if spec.value.shape == shape:     # the common case: the same element offset
                    x = k.load(k.ins[0], k.add(base, j))
                else:
                    x = read_scalar(k, spec.step, spec.value, views[0], coords)
                k.store(apply_scalar(k, [spec.step], x, coords, views), k.out, k.add(base, j))


def step_access(node: Node):
    from ...ir.ops import OPS
    return OPS[node.op].access[0]
