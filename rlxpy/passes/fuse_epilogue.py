"""fuse-epilogue: a matmul and the chain of element-wise steps that follows it become one
`fused_matmul` node, which codegen turns into one kernel that applies the steps while the result
is still in registers.

From each matmul, follow its single user while that user is the next step allowed, in this order,
each at most once:

    bias_add on the matmul's last axis -> transpose (e.g. channels-last to NCHW)
        -> upsample_add of a coarser operand (the chain value must be the fine operand) -> scale

The fused node takes the name of the last step it absorbs, so its users and the outputs need no
rewiring. A value that is a graph output or has several users ends the chain: the intermediate is
needed. Every place where a step could not be fused is reported as a "missed" remark with the
reason (the fusion report).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..ir.graph import Graph, Node
from .base import Pass, PassContext, register

STEPS = ("bias_add", "transpose", "upsample_add", "scale")
OPTION = {"bias_add": "bias", "transpose": "transpose", "upsample_add": "upsample", "scale": "scale"}


@register
@dataclass(frozen=True)
class FuseEpilogue(Pass):
    name: ClassVar[str] = "fuse-epilogue"
    summary: ClassVar[str] = "fuse matmul with a following bias_add, transpose, upsample_add and scale"
    bias: bool = True
    transpose: bool = True
    upsample: bool = True
    scale: bool = True

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        fused: dict[str, Node] = {}          # name of a chain's last step -> the fused node
        absorbed: set[str] = set()           # matmuls and steps folded into a fused node
        refusals: dict[str, str] = {}        # step -> why a chain could not take it
        for matmul in graph.of_op("matmul"):
            chain, stops = self._chain(graph, matmul)
            refusals.update(stops)
            if chain:
                node = self._fuse(matmul, chain)
                fused[node.name] = node
                absorbed.update([matmul.name] + [s.name for s in chain])
                ctx.remark(node, "applied", f"fused matmul %{matmul.name} with "
                           + ", ".join(f"{s.op} %{s.name}" for s in chain))
        for node in graph.nodes:             # the fusion report: every step left unfused, and why
            if node.op in STEPS and node.name not in absorbed:
                source = graph[node.operands[0]]
                why = refusals.get(node.name) or (
                    f"its operand %{source.name} ({source.op}) does not end a matmul chain")
                ctx.remark(node, "missed", "not fused: " + why)
        if not fused:
            return graph
        nodes = [fused.get(n.name, n) for n in graph.nodes
                 if n.name in fused or n.name not in absorbed]
        return graph.with_nodes(nodes)

    def _chain(self, graph: Graph, matmul: Node) -> tuple[list[Node], dict[str, str]]:
        """The steps that fuse into `matmul`, and why each step that could follow was refused."""
        chain: list[Node] = []
        refused: dict[str, str] = {}
        current, stage = matmul, 0
        while True:
            users = graph.users(current.name)
            candidates = []
            for user in users:
                if user.op in STEPS:
                    why = self._refuse(user, current, stage)
                    if why:
                        refused[user.name] = why
                    else:
                        candidates.append(user)
            if not candidates:
                break
            step = candidates[0]
            if graph.is_output(current.name):
                refused[step.name] = f"its operand %{current.name} is also a graph output, so it must be stored"
                break
            if len(users) > 1:
                refused[step.name] = f"its operand %{current.name} has {len(users)} users, so it must be stored"
                break
            chain.append(step)
            current, stage = step, STEPS.index(step.op) + 1
        return chain, refused

    def _refuse(self, step: Node, current: Node, stage: int) -> str | None:
        """Why `step` cannot extend a chain that ends at `current`, or None."""
        if STEPS.index(step.op) < stage:
            return (f"{step.op} cannot follow {current.op} in one epilogue; the order is "
                    f"{' -> '.join(STEPS)}, each at most once")
        if not getattr(self, OPTION[step.op]):
            return f"disabled by the option fuse-epilogue{{{OPTION[step.op]}=false}}"
        if step.op == "bias_add" and step.attrs["axis"] % step.type.rank != step.type.rank - 1:
            return f"bias_add on axis {step.attrs['axis']}, not the matmul's last (output-channel) axis"
        if step.op == "upsample_add" and step.operands[0] != current.name:
            return (f"%{current.name} is its coarse operand, which is upsampled; only the fine operand "
                    f"can carry a matmul epilogue")
        return None

    def _fuse(self, matmul: Node, chain: list[Node]) -> Node:
        attrs = {"bias": False, "perm": (), "upsample": "none", "factor": 1.0}
        operands = list(matmul.operands)
        for step in chain:
            if step.op == "bias_add":
                attrs["bias"] = True
                operands.append(step.operands[1])
            elif step.op == "transpose":
                attrs["perm"] = step.attrs["perm"]
            elif step.op == "upsample_add":
                attrs["upsample"] = step.attrs["mode"]
                operands.append(step.operands[1])
            elif step.op == "scale":
                attrs["factor"] = step.attrs["factor"]
        last = chain[-1]
        return Node(last.name, "fused_matmul", tuple(operands), attrs, last.type, origin=self.name)
