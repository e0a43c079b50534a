"""`compile_llvm`: lower a bound, optimised graph to one LLVM module, JIT it and plan its runs."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..errors import CodegenError, RlxError
from ..ir.graph import Graph
from ..ir.verify import verify, where
from .cache import ObjectCache, default_cache_dir
from .debug import banner, debug_level, emit
from .executable import LLVMExecutable
from .jit import compile_module
from .lower import lower_graph
from .plan import Plan
from .target import host

COMPARE_WITH = (None, "interp")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def compile_llvm(graph: Graph, source: Graph | None = None, *, strict: bool = False,
                 cache: bool | str | os.PathLike = True, compare_with: str | None = None,
                 dump_dir: str | os.PathLike | None = None, threads: int | None = None) -> LLVMExecutable:
    """Compile `graph` (params bound, already optimised) to native code for this CPU.

    strict        a node without a native lowering is an error instead of an interpreter step
    cache         True: $RLXPY_CACHE_DIR or ~/.cache/rlxpy; a path: that directory; False: off
    compare_with  "interp": every call also checks each native node against its interpreter rule
    dump_dir      write <graph>.ll, <graph>.opt.ll and <graph>.s there
    threads       threads a large kernel is split over (default: the cores this process may use)
    """
    if not isinstance(graph, Graph):
        raise RlxError(f"compile_llvm() takes a Graph, got {type(graph).__name__}")
    if not isinstance(strict, bool):
        raise RlxError(f"strict must be True or False, got {strict!r}")
    if compare_with not in COMPARE_WITH:
        raise RlxError(f"compare_with must be None or 'interp', got {compare_with!r}")
    if threads is None:
        threads = available_cores()
    elif isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise RlxError(f"threads must be a positive integer or None, got {threads!r}")
    object_cache = _object_cache(cache)
    level = debug_level()
    times: dict[str, float] = {}
    start = time.perf_counter()

    verify(graph)
    lowered = lower_graph(graph)
    if strict and lowered.fallbacks:
        first = lowered.fallbacks[0]
        more = f" (and {len(lowered.fallbacks) - 1} more)" if len(lowered.fallbacks) > 1 else ""
        raise CodegenError(f"{where(first.node)}: {first.reason}; strict=True forbids running it on "
                           f"the interpreter{more}")
    ir_text = str(lowered.module)
    symbols = tuple(k.symbol for k in lowered.kernels)
    times["lower"] = time.perf_counter() - start
    if level >= 1:
        where_cache = object_cache.directory if object_cache else "off"
        emit(f"rlxpy llvm: @{graph.name}: llvmlite.ir -> parse, verify -> new pass manager "
             f"O{host().opt_level} -> object code -> MCJIT  [{host().describe()}; cache {where_cache}]")
        for s in lowered.steps:
            what = {"native": lambda: s.kernel.symbol,
                    "alias": lambda: f"view of %{s.node.operands[s.alias.operand]}",
                    "interp": lambda: s.reason}[s.kind]()
            emit(f"rlxpy llvm:   %{s.node.name} ({s.node.op}) -> {s.kind}: {what}")
    if level >= 3:
        emit(banner(f"LLVM IR of @{graph.name}", ir_text))

    module = compile_module(graph.name, ir_text, symbols, object_cache)
    times.update(module.times)
    plan = Plan(graph, lowered.steps, module, threads)
    times["total"] = time.perf_counter() - start
    if level >= 1:
        stages = ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in times.items())
        emit(f"rlxpy llvm: @{graph.name}: object code {module.cache_status}; {stages}")
    if level >= 2:
        emit(banner(f"Optimised LLVM IR of @{graph.name}", module.optimized_ir if symbols else ir_text))
    if level >= 3 and symbols:
        emit(banner(f"Assembly of @{graph.name}", module.asm))
    if dump_dir is not None:
        _dump(Path(dump_dir), graph.name, module, bool(symbols))
    return LLVMExecutable(graph, source, lowered, module, plan, compare_with=compare_with, times=times)


def _object_cache(cache) -> ObjectCache | None:
    if cache is False or cache is None:
        return None
    if cache is True:
        return ObjectCache(default_cache_dir())
    if isinstance(cache, (str, os.PathLike)):
        return ObjectCache(Path(cache))
    raise RlxError(f"cache must be True, False or a directory, got {cache!r}")


def _dump(directory: Path, name: str, module, has_code: bool) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{name}.ll").write_text(module.ir_text)
        (directory / f"{name}.opt.ll").write_text(module.optimized_ir if has_code else module.ir_text)
        (directory / f"{name}.s").write_text(module.asm if has_code else "")
    except OSError as e:
        raise RlxError(f"dump directory {directory}: {e}") from None
