"""`rlxpy.compile`: bind params, verify, run the pass pipeline, and hand the graph to a backend."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Mapping

from .errors import OptionError, RlxError
from .executable import Executable, InterpExecutable
from .interp import call_bytes
from .ir.graph import Graph
from .ir.verify import verify
from .memory import check_fits
from .params import bind_params
from .passes import PassManager

TARGETS = ("interp", "llvm")


def compile(graph: Graph, params: Mapping[str, object] | None = None, target: str = "interp", *,
            pipeline: str | PassManager = "default", report: bool = False,
            dump_dir: str | Path | None = None, dump_constants: str | None = None, verify_each: bool = True,
            **options: object) -> Executable:
    """Compile `graph` for `target` ("interp" or "llvm") with `params` bound as constants.

    `pipeline` is a pipeline string (see `rlxpy opt --list-passes`) or a configured PassManager;
    `report=True` prints the fusion report (every place a fusion did not apply, and why) to
    stderr; `dump_dir` writes the IR before and after every pass as numbered .rlx files (and, for
    llvm, the module's .ll, .opt.ll and .s); `dump_constants` = "small" (the default: each large
    constant written once), "all" or "none" (see `rlxpy.passes.DumpDir`). The executable keeps the
    optimised graph (`exe.graph`) and the pass log (`exe.pass_log`). Options of target "llvm" (strict, cache,
    compare_with, threads): see `rlxpy.codegen.compile_llvm`; another option is an OptionError.
    A graph whose call can never fit in the memory this process may use (see `rlxpy.memory`) is
    refused with an OutOfMemoryError before anything large is allocated.
    """
    if not isinstance(graph, Graph):
        raise RlxError(f"compile() takes a Graph, got {type(graph).__name__}")
    if target not in TARGETS:
        raise RlxError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    _check_options(target, options)
    source = verify(graph)
    bound = bind_params(source, params)
    check_fits(_io_bytes(bound), f"a call of @{bound.name}")       # before passes allocate anything
    if isinstance(pipeline, PassManager):
        if dump_constants is not None:
            raise OptionError("dump_constants is an option of the PassManager given as pipeline=; set it there")
        pm = pipeline
    else:
        pm = PassManager(pipeline, verify_each=verify_each, dump_dir=dump_dir, dump_constants=dump_constants)
    optimised = pm.run(bound)
    if target == "llvm":
        from .codegen import compile_llvm
        exe = compile_llvm(optimised, source, dump_dir=dump_dir, **options)
    else:
        check_fits(call_bytes(optimised), f"a call of @{optimised.name} on interp")
        exe = InterpExecutable(optimised, source)
    exe.pass_log = pm.log
    exe.pipeline = str(pm)
    if report:
        print(pm.log.report("fuse-epilogue"), file=sys.stderr)
    return exe


def _io_bytes(graph: Graph) -> dict[str, int]:
    """What any call needs whatever the passes do and the target is: the inputs, and an array for
    each output name whose value depends on an input (no pass can fold those into constants)."""
    live: set[str] = set()
    for node in graph.nodes:
        if node.op == "input" or any(o in live for o in node.operands):
            live.add(node.name)
    inputs = sum(n.type.nbytes for n in graph.nodes if n.op == "input")
    outputs = sum(graph[v].type.nbytes for v in graph.outputs.values() if v in live)
    return {"inputs": inputs, "outputs": outputs}


def target_options(target: str) -> tuple[str, ...]:
    """The keyword options `compile` passes on to the backend of `target`."""
    if target != "llvm":
        return ()
    from .codegen import compile_llvm
    parameters = inspect.signature(compile_llvm).parameters.values()
    return tuple(p.name for p in parameters if p.kind is p.KEYWORD_ONLY and p.name != "dump_dir")


def _check_options(target: str, options: Mapping[str, object]) -> None:
    valid = target_options(target)
    unknown = [k for k in options if k not in valid]
    if unknown:
        takes = f"its options: {', '.join(valid)}" if valid else "it takes no options"
        raise OptionError(f"option '{unknown[0]}' does not apply to target {target!r}; {takes}")
