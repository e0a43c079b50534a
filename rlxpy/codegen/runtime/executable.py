"""`LLVMExecutable`: a graph compiled to native kernels, with the generated code on show."""

from __future__ import annotations

import numpy as np

from ...executable import Executable, check_inputs
from ...ir.graph import Graph
from ..jit import CompiledModule
from ..kernel import Step
from ..target import host
from .program import Program


class LLVMExecutable(Executable):
    target = "llvm"

    def __init__(self, graph: Graph, source: Graph | None, steps: list[Step], module: CompiledModule,
                 program: Program, *, compare_with: str | None, times: dict[str, float]):
        super().__init__(graph, source)
        self._steps = list(steps)
        self.module = module                 # owns the JIT engine: the code lives as long as this
        self.program = program
        self.compare_with = compare_with
        self.compile_times = dict(times)

    def _run(self, inputs: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.program.run(inputs, out, compare=self.compare_with == "interp")

    def trace(self, **inputs: object) -> dict[str, np.ndarray]:
        """Every value of the graph (by SSA name) as the native program computes it, for debugging
        and for checking kernels one by one."""
        checked = check_inputs(self.input_types, inputs)
        values: dict[str, np.ndarray] = {n.name: n.value for n in self.graph.nodes if n.op == "const"}
        values.update({n.name: checked[n.attrs["name"]] for n in self.graph.nodes if n.op == "input"})
        self.program.run(checked, {}, observe=lambda name, a: values.__setitem__(name, np.array(a)))
        return values

    # -- what was generated ----------------------------------------------------------------------

    @property
    def llvm_ir(self) -> str:
        """The module's LLVM IR as generated (one function per native node; from the cache entry
        on a hit)."""
        return self.module.ir_text

    @property
    def optimized_llvm_ir(self) -> str:
        """The module's LLVM IR after the O3 pipeline (recomputed once on a cache hit)."""
        return self.module.optimized_ir

    @property
    def asm(self) -> str:
        """The module's assembly for this CPU."""
        return self.module.asm

    @property
    def cache_status(self) -> str:
        return self.module.cache_status

    @property
    def threads(self) -> int:
        return self.program.threads

    @property
    def steps(self) -> list[Step]:
        return list(self._steps)

    @property
    def placement(self) -> dict[str, str]:
        """Node name -> "native", "alias" (a view, no code) or "interp" (fallback)."""
        return {s.node.name: s.kind for s in self._steps}

    @property
    def fallbacks(self) -> dict[str, str]:
        """Node name -> why it runs on the interpreter."""
        return {s.node.name: s.reason for s in self._steps if s.kind == "interp"}

    def report(self) -> str:
        steps = self._steps
        count = {k: sum(s.kind == k for s in steps) for k in ("native", "alias", "interp")}
        t = self.compile_times
        stages = ", ".join(f"{k} {v * 1e3:.1f}" for k, v in t.items() if k != "total")
        lines = [
            f"@{self.graph.name} on llvm ({host().describe()}, {self.threads} thread(s)): "
            f"{count['native']} native, {count['alias']} alias, {count['interp']} on the interpreter",
            f"  object code: {self.cache_status}; compile {t.get('total', 0) * 1e3:.1f} ms ({stages} ms); "
            f"scratch {self.program.buffer_bytes / 2**20:.1f} MiB per buffer set",
        ]
        name_w = max([len(s.node.name) for s in steps] + [4]) + 1
        op_w = max([len(s.node.op) for s in steps] + [2])
        for s in steps:
            if s.kind == "native":
                what = f"{s.symbol}  (rule {s.rule}, {s.extent} parallel iterations)"
            elif s.kind == "alias":
                what = f"view of %{s.node.operands[s.operand]}, no code (rule {s.rule})"
            else:
                what = s.reason
            lines.append(f"  %{s.node.name:<{name_w}} {s.node.op:<{op_w}}  {s.kind:<6}  {what}")
            for why in s.declined if s.kind != "interp" else ():
                lines.append(f"  {'':<{name_w + 1}} {'':<{op_w}}  {'':<6}  declined by {why}")
        return "\n".join(lines)
