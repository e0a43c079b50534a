"""`compile_llvm`: select a rule for every node, then (on an object-cache miss) emit one LLVM module,
compile and load it, and hand the kernels to the runtime.

    select (match: Spec per node, no IR) -> key -> cache hit: object code
                                               -> miss: emit (rule.emit per kernel) -> optimise -> object code
    -> load (MCJIT) -> Program (buffers, threads) -> LLVMExecutable
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..errors import CodegenError, RlxError
from ..ir.graph import Graph
from ..ir.verify import verify, where
from ..memory import check_fits
from .cache import Entry, ObjectCache, default_cache_dir
from .debug import banner, debug_level, emit
from .isa import host_isa
from .jit import build_object, load_module
from .kernel import Kernel, Step
from .key import module_key
from .module import emit_module
from .objcheck import ObjectCodeError, check_object
from .runtime import LLVMExecutable, Program
from .runtime.program import Layout
from .select import fallbacks, select
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
    steps = select(graph, host_isa())
    _check_strict(steps, strict)
    check_fits(Layout(graph, steps).call_bytes(), f"a call of @{graph.name} on llvm")
    kernels = [s for s in steps if isinstance(s, Kernel)]
    key = module_key(graph.name, kernels) if kernels and object_cache is not None else None
    times["select"] = time.perf_counter() - start
    if level >= 1:
        where_cache = object_cache.directory if object_cache else "off"
        emit(f"rlxpy llvm: @{graph.name}: llvmlite.ir -> parse, verify -> new pass manager "
             f"O{host().opt_level} -> object code -> MCJIT  [{host().describe()}; cache {where_cache}]")
        for s in steps:
            what = {"native": lambda: f"{s.symbol} (rule {s.rule})",
                    "alias": lambda: f"view of %{s.node.operands[s.operand]}",
                    "interp": lambda: s.reason}[s.kind]()
            emit(f"rlxpy llvm:   %{s.node.name} ({s.node.op}) -> {s.kind}: {what}")

    entry, status = None, "off"
    if key is not None:
        entry, status = object_cache.load(key)
        if entry is not None and list(entry.symbols) != [k.symbol for k in kernels]:
            entry, status = None, "corrupt (its kernels differ from the selection)"
    if entry is None:
        entry, status = _build(graph.name, kernels, object_cache, key, status, times)
    if level >= 3:
        emit(banner(f"LLVM IR of @{graph.name}", entry.ir_text))

    module = load_module(graph.name, entry, status)
    times.update(module.times)
    program = Program(graph, steps, module, threads)
    times["total"] = time.perf_counter() - start
    if level >= 1:
        stages = ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in times.items())
        emit(f"rlxpy llvm: @{graph.name}: object code {module.cache_status}; {stages}")
    has_code = bool(entry.symbols)
    if level >= 2:
        emit(banner(f"Optimised LLVM IR of @{graph.name}", module.optimized_ir if has_code else entry.ir_text))
    if level >= 3 and has_code:
        emit(banner(f"Assembly of @{graph.name}", module.asm))
    if dump_dir is not None:
        _dump(Path(dump_dir), graph.name, module, has_code)
    return LLVMExecutable(graph, source, steps, module, program, compare_with=compare_with, times=times)


def _check_strict(steps: list[Step], strict: bool) -> None:
    found = fallbacks(steps)
    if strict and found:
        first = found[0]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise CodegenError(f"{where(first.node)}: {first.reason}; strict=True forbids running it on "
                           f"the interpreter{more}")


def _build(name: str, kernels: list[Kernel], object_cache: ObjectCache | None, key: str | None,
           status: str, times: dict[str, float]) -> tuple[Entry, str]:
    """A cache miss (or no cache): emit the module's IR, compile it, and store the entry."""
    t = time.perf_counter()
    ir_text = emit_module(name, kernels)
    times["emit"] = time.perf_counter() - t
    if not kernels:
        return Entry(b"", (), _ir_text=ir_text), "not needed (no kernels)"
    obj = build_object(name, ir_text, tuple(k.symbol for k in kernels), times)
    entry = Entry(obj, tuple(k.symbol for k in kernels), _ir_text=ir_text)
    if object_cache is None or key is None:
        return entry, status
    try:
        # what a hit will check before loading: an entry that could never be loaded is not written
        check_object(obj, entry.symbols, host().triple)
    except ObjectCodeError as e:
        return entry, f"not stored (its object code fails the loader's check: {e})"
    object_cache.store(key, entry)
    return entry, {"off": "off", "miss": "miss"}.get(status, f"{status}, recompiled")


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
