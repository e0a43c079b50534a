"""Write a pass, register it, run it in a pipeline, and let difftest check that it keeps meaning.

    python examples/write_a_pass.py

The same file is a pass plugin for the command line: importing it registers the pass (the demo
below runs only as a script), e.g.

    rlxpy opt block.rlx -p 'merge-scales,dce' --load-pass-plugin examples/write_a_pass.py
    rlxpy difftest --count 100 --pipeline 'merge-scales,default' --load-pass-plugin examples/write_a_pass.py

The pass folds two scales in a row into one: scale(scale(x, a), b) -> scale(x, a * b). (In exact
arithmetic they are equal; in float32 they may differ in the last bit, which the difftest
tolerance allows.)
"""

from dataclasses import dataclass
from typing import ClassVar

from rlxpy import GraphBuilder
from rlxpy.difftest import check_case, seeded_case
from rlxpy.ir import Graph
from rlxpy.passes import Pass, PassContext, PassManager, option, register


@register
@dataclass(frozen=True)
class MergeScales(Pass):
    name: ClassVar[str] = "merge-scales"
    summary: ClassVar[str] = "scale(scale(x, a), b) -> scale(x, a * b)"
    min_factor: float = option(0.0, min=0.0)   # an option with its range: `merge-scales{min-factor=0.1}`

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        nodes, changed = [], False
        for node in graph.nodes:
            inner = graph[node.operands[0]] if node.op == "scale" else None
            if inner is not None and inner.op == "scale" and abs(inner.attrs["factor"]) >= self.min_factor:
                factor = inner.attrs["factor"] * node.attrs["factor"]
                node = node.with_(operands=inner.operands, attrs={"factor": factor}, origin=self.name)
                ctx.remark(node, "applied", f"merged with %{inner.name}")
                changed = True
            nodes.append(node)
        return graph.with_nodes(nodes) if changed else graph   # the same object: "nothing changed"


def main() -> None:
    b = GraphBuilder("demo")
    x = b.input("x", (2, 3))
    b.output("y", b.scale(b.scale(x, factor=2.0), factor=0.25))
    graph = b.build()

    pm = PassManager("merge-scales,dce", print_ir_after_change=True)
    optimised = pm.run(graph)                    # prints the IR after each pass that changed it
    assert [n.op for n in optimised] == ["input", "scale"]
    print("\n".join(str(r) for r in pm.log.remarks))

    # Translation validation on 50 random graphs: the interpreter before and after every pass agree.
    cases = [seeded_case(seed) for seed in range(50)]
    bad = [c for c in cases if not check_case(c.graph, c.inputs, params=c.params, pipeline="merge-scales,dce").ok]
    print(f"merge-scales kept the meaning of {50 - len(bad)} of 50 random graphs")
    assert not bad


if __name__ == "__main__":
    main()
