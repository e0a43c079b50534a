"""Lowering rules for tests: a flat scale kernel that can be told to be wrong, and a rule that
always declines."""

from dataclasses import dataclass

from rlxpy.codegen import Rule, Spec, Unsupported


@dataclass(frozen=True, kw_only=True)
class ScaleSpec(Spec):
    factor: float


class ScaleRule(Rule):
    """scale as one flat loop; multiplies by factor + `offset` (a planted miscompile), only when
    the tensor has an odd number of elements if `odd_only`."""

    ops = ("scale",)

    def __init__(self, name="planted", offset=0.0, odd_only=False, priority=0):
        self.name, self.offset, self.odd_only, self.priority = name, offset, odd_only, priority

    def match(self, node, graph, target):
        wrong = self.offset if (node.type.numel % 2 or not self.odd_only) else 0.0
        return ScaleSpec(extent=node.type.numel, cost=1, operands=1, factor=node.attrs["factor"] + wrong)

    def emit(self, spec, k):
        with k.parallel_loop() as i:
            k.store(k.b.fmul(k.load(k.ins[0], i), k.f32(spec.factor)), k.out, i)


class Declines(Rule):
    def __init__(self, op, name, why, priority=0):
        self.ops, self.name, self.why, self.priority = (op,), name, why, priority

    def match(self, node, graph, target):
        raise Unsupported(self.why)
