"""fuse-epilogue: a matmul and the chain of pointwise ops that follows it become one `fused_matmul`
node, which codegen turns into one kernel that applies the ops while the result is in registers.

From each matmul, follow its single user while that user is
- a pointwise op (any op with the `pointwise` trait) whose first operand is the chain's value and
  whose result has the value's type: it becomes the next step of the epilogue, its other operands
  become operands of the fused node; or
- a transpose (once per chain): the permutation becomes the layout the result is stored in. The
  steps before it are rewritten to act on the stored layout (their axis attributes follow the
  permutation); a step whose operands cannot follow it (an upsampled operand whose two axes the
  permutation moves) stops the chain there.

The fused node takes the name of the last op it absorbs, so its users and the outputs need no
rewiring. A value that is a graph output or has several users ends the chain: the intermediate is
needed. Every pointwise op or transpose left unfused is reported as a "missed" remark with the
reason (the fusion report).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..ir.graph import Graph, Node
from ..ir.ops import CONTRACTION, FUSED, LAYOUT, OPS, POINTWISE, Step
from ..errors import PassError
from .base import Pass, PassContext, register


def is_permutation(node: Node) -> bool:
    """A layout op whose only attribute is a permutation of its operand's axes (a transpose)."""
    opdef = OPS[node.op]
    return opdef.has(LAYOUT) and [a.role for a in opdef.attrs.values()] == ["perm"]


def permuted_step(step: Step, perm: tuple[int, ...]) -> Step | str:
    """`step`, which acts on a value, rewritten to act on that value transposed by `perm`; or why
    it cannot be."""
    opdef, rank = step.opdef, len(perm)
    attrs = step.attributes
    for name, attr in opdef.attrs.items():
        if attr.role == "axis":
            attrs[name] = perm.index(attrs[name] % rank)
    for operand, access in zip(opdef.fixed_operands[1:], opdef.access[1:]):
        if access.kind == "elementwise":
            return f"its operand '{operand}' of {step.op} would have to be transposed too"
        if access.kind == "upsample2x" and tuple(perm[-2:]) != (rank - 2, rank - 1):
            return (f"{step.op} before it upsamples the last two axes, which perm {list(perm)} moves")
    return Step(step.op, tuple(attrs.items()))


@register
@dataclass(frozen=True)
class FuseEpilogue(Pass):
    name: ClassVar[str] = "fuse-epilogue"
    summary: ClassVar[str] = "fuse each matmul with the pointwise ops and transpose that follow it"
    transpose: bool = True       # absorb a transpose (store the result permuted)
    skip: str = ""               # ops never fused, separated by '+': skip=upsample_add+scale

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = sorted(self.skipped - {op.name for op in OPS.values() if op.has(POINTWISE) or op.has(LAYOUT)})
        if unknown:
            raise PassError(f"pass '{self.name}': option skip: '{unknown[0]}' is not a pointwise or layout op")

    @property
    def skipped(self) -> set[str]:
        return {s for s in self.skip.split("+") if s}

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        skipped = self.skipped
        fused: dict[str, Node] = {}          # name of a chain's last op -> the fused node
        absorbed: set[str] = set()           # matmuls and the ops folded into a fused node
        refusals: dict[str, str] = {}        # op -> why a chain could not take it
        for node in graph.nodes:
            opdef = OPS[node.op]
            if not opdef.has(CONTRACTION) or opdef.has(FUSED):
                continue
            chain, stops = self._chain(graph, node, skipped)
            refusals.update(stops)
            if chain:
                new = self._fuse(graph, node, chain)
                fused[new.name] = new
                absorbed.update([node.name] + [s.name for s in chain])
                ctx.remark(new, "applied", f"fused {node.op} %{node.name} with "
                           + ", ".join(f"{s.op} %{s.name}" for s in chain))
        for node in graph.nodes:             # the fusion report: every op left unfused, and why
            if self._fusible_kind(node) and node.name not in absorbed:
                source = graph[node.operands[0]]
                why = refusals.get(node.name) or (
                    f"its operand %{source.name} ({source.op}) does not end a matmul chain")
                ctx.remark(node, "missed", "not fused: " + why)
        if not fused:
            return graph
        nodes = [fused.get(n.name, n) for n in graph.nodes
                 if n.name in fused or n.name not in absorbed]
        return graph.with_nodes(nodes)

    @staticmethod
    def _fusible_kind(node: Node) -> bool:
        return OPS[node.op].has(POINTWISE) or is_permutation(node)

    def _chain(self, graph: Graph, start: Node, skipped: set[str]) -> tuple[list[Node], dict[str, str]]:
        """The ops that fuse into `start`, and why each op that could follow was refused."""
        chain: list[Node] = []
        refused: dict[str, str] = {}
        steps: list[Step] = []
        permuted = False
        current = start
        while True:
            users = graph.users(current.name)
            candidates = []
            for user in users:
                if not self._fusible_kind(user):
                    continue
                why = self._refuse(user, current, skipped, permuted)
                if why is None and is_permutation(user):
                    rewritten = [permuted_step(s, user.attrs["perm"]) for s in steps]
                    why = next((r for r in rewritten if isinstance(r, str)), None)
                if why:
                    refused[user.name] = why
                else:
                    candidates.append(user)
            if not candidates:
                break
            op = candidates[0]
            if graph.is_output(current.name):
                refused[op.name] = f"its operand %{current.name} is also a graph output, so it must be stored"
                break
            if len(users) > 1:
                refused[op.name] = f"its operand %{current.name} has {len(users)} users, so it must be stored"
                break
            if is_permutation(op):
                steps = [permuted_step(s, op.attrs["perm"]) for s in steps]
                permuted = True
            else:
                steps.append(Step(op.op, tuple(op.attrs.items())))
            chain.append(op)
            current = op
        return chain, refused

    def _refuse(self, op: Node, current: Node, skipped: set[str], permuted: bool) -> str | None:
        """Why `op` cannot extend a chain that ends at `current`, or None."""
        if op.op in skipped:
            return f"disabled by the option fuse-epilogue{{skip={self.skip}}}"
        if is_permutation(op):
            if not self.transpose:
                return "disabled by the option fuse-epilogue{transpose=false}"
            if permuted:
                return "the chain already stores its result permuted; one transpose per epilogue"
            return None
        if op.operands[0] != current.name:
            return (f"%{current.name} is not its first operand ('{OPS[op.op].fixed_operands[0]}'), the "
                    f"value an epilogue step acts on")
        if current.name in op.operands[1:]:
            return f"it reads %{current.name} a second time, as an operand the epilogue takes from memory"
        if op.type != current.type:
            return f"it turns {current.type} into {op.type}; an epilogue step must keep the type"
        return None

    def _fuse(self, graph: Graph, start: Node, chain: list[Node]) -> Node:
        perm: tuple[int, ...] = ()
        steps: list[Step] = []
        extra: list[str] = []
        for op in chain:
            if is_permutation(op):
                perm = tuple(op.attrs["perm"])
                steps = [permuted_step(s, perm) for s in steps]   # checked possible by _chain
            else:
                steps.append(Step(op.op, tuple(op.attrs.items())))
                extra += op.operands[1:]
        last = chain[-1]
        attrs = {"perm": perm, "epilogue": tuple(steps)}
        return Node(last.name, "fused_matmul", tuple(start.operands) + tuple(extra), attrs, last.type,
                    origin=self.name)
