"""From LLVM IR text to callable code: optimise, emit object code (or take it from the cache), load.

One module per graph, one MCJIT engine per module. The engine owns the code: it lives as long as the
`CompiledModule`, which the executable and its plan keep. Object code is loaded into the engine with
`add_object_file`, the same way on a cache hit and a miss, so a hit parses and optimises nothing
(and builds no IR: the cache is keyed before emission, see `key`).
The optimised IR and the assembly are made on demand (and then kept) by optimising the IR text
again, which is deterministic: the module that was compiled cannot be shown afterwards, because
code emission rewrites it (CodeGenPrepare), and printing it up front would slow every compile.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import llvmlite.binding as llvm
from llvmlite.binding import ffi

from .cache import Entry
from .target import LLVM_LOCK, host, new_target_machine, target_machine


def optimise(ir_text: str) -> llvm.ModuleRef:
    """Parse, verify and optimise with the new pass builder at the host's opt level.

    The pipeline is LLVM's O3 with its default tuning, chosen by measurement on the base_plus neck
    module (two shared micro-kernel bodies, ~2,200 lines): O2 builds the same code in the same
    time; turning off the loop and SLP vectorizers or unrolling saves under 5% of the optimise
    time, since hand-vectorised kernels give them little to do, while the generic rules' scalar
    loops need the loop vectorizer; O1 saves about a quarter of it (25 ms) but schedules the
    micro-kernel's bookkeeping differently, no faster. The big costs (InstCombine and DSE here,
    instruction selection in code emission) grow with the code, so compile time is cut by emitting
    less (loops kept as loops where unrolling does not pay, bodies shared between kernels), not by
    weaker passes.
    """
    with LLVM_LOCK:
        mod = parse(ir_text)
        try:
            mod.verify()
            pto = llvm.create_pipeline_tuning_options(speed_level=host().opt_level)
            # a pass builder per run: llvmlite registers each run's instrumentation, which dies
            # with the run, in the builder's callbacks; a reused builder would call dead ones
            pb = llvm.create_pass_builder(target_machine(), pto)
            mpm = pb.getModulePassManager()
            try:
                mpm.run(mod, pb)
            finally:
                _dispose_pass_manager(mpm)
        except BaseException:
            mod.close()
            raise
        return mod


def parse(ir_text: str) -> llvm.ModuleRef:
    """Parse into a context of the module's own, freed with it (the module holds it).

    LLVM's global context keeps what modules create in it (uniqued constants and types, distinct
    metadata such as the vectorizer's loop notes) until the process ends: ~4.5 KB per optimisation
    of the tiny neck, more for graphs with new shapes and constants every time.
    """
    return llvm.parse_assembly(ir_text, context=llvm.create_context())


def _dispose_pass_manager(pm: llvm.ModulePassManager) -> None:
    """Free a pipeline and its passes, which llvmlite itself never does.

    llvmlite 0.50 declares `ModulePassManager(ffi.ObjectRef, NewPassManager)`, so the no-op
    `ObjectRef._dispose` comes first in the MRO and shadows `NewPassManager._dispose`: `close()`
    and garbage collection free nothing, and each O3 pipeline leaks with its passes and the maps
    they grew while running (27 KB as built, ~200 KB of C heap after a run on the tiny neck). A
    release whose `_dispose` is real frees it through `close()`. What stays is llvmlite's own:
    `LLVMPY_CreatePassBuilder` allocates the builder's PassInstrumentationCallbacks with `new` and
    nothing deletes them (~1.5 KB per optimisation; reusing one builder would avoid it, but each
    run registers callbacks into it that die with the run).
    """
    if type(pm)._dispose is ffi.ObjectRef._dispose:
        ffi.lib.LLVMPY_DisposeNewModulePassManger(pm)
        pm.detach()
    else:
        pm.close()


@dataclass
class CompiledModule:
    """A module's object code loaded into its own MCJIT engine (none when it has no kernels)."""

    name: str
    entry: Entry
    cache_status: str = "off"
    times: dict[str, float] = field(default_factory=dict)
    addresses: dict[str, int] = field(default_factory=dict)
    _engine: object = field(default=None, repr=False)
    _object: object = field(default=None, repr=False)
    _optimized_ir: str | None = field(default=None, repr=False)
    _asm: str | None = field(default=None, repr=False)

    @property
    def ir_text(self) -> str:
        return self.entry.ir_text

    @property
    def symbols(self) -> tuple[str, ...]:
        return self.entry.symbols

    @property
    def optimized_ir(self) -> str:
        if self._optimized_ir is None:
            mod = optimise(self.ir_text)        # only its text is kept, not the module
            try:
                self._optimized_ir = str(mod)
            finally:
                mod.close()
        return self._optimized_ir

    @property
    def asm(self) -> str:
        if self._asm is None:
            # from a fresh parse: code emission rewrites the module it is given (CodeGenPrepare)
            text = self.optimized_ir
            with LLVM_LOCK:
                mod = parse(text)
                try:
                    self._asm = target_machine().emit_assembly(mod)
                finally:
                    mod.close()
        return self._asm


def build_object(name: str, ir_text: str, symbols: tuple[str, ...], times: dict[str, float]) -> bytes:
    """Optimise and emit object code for `ir_text`; every one of `symbols` must survive."""
    t = time.perf_counter()
    mod = optimise(ir_text)
    try:
        times["optimise"] = time.perf_counter() - t
        t = time.perf_counter()
        with LLVM_LOCK:
            obj = target_machine().emit_object(mod)
        times["codegen"] = time.perf_counter() - t
        defined = {f.name for f in mod.functions if not f.is_declaration}
    finally:
        mod.close()
    missing = sorted(set(symbols) - defined)
    if missing:
        raise RuntimeError(f"module {name}: the optimised module lost kernel(s) {', '.join(missing)}")
    return obj


def load_module(name: str, entry: Entry, cache_status: str) -> CompiledModule:
    """Load the entry's object code into a new engine and look up every kernel's address."""
    cm = CompiledModule(name, entry, cache_status)
    if not entry.symbols:                             # nothing native: no engine needed
        return cm
    t = time.perf_counter()
    with LLVM_LOCK:
        engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), new_target_machine())
        obj_ref = llvm.ObjectFileRef.from_data(entry.object_code)
        engine.add_object_file(obj_ref)
        engine.finalize_object()
        for sym in entry.symbols:
            # get_function_address on a missing name is a fatal LLVM error; the object's symbols
            # were checked when it was built, and a cached entry's by `objcheck` as it was read
            addr = engine.get_function_address(sym)
            if not addr:
                raise RuntimeError(f"module {name}: kernel {sym} has no address after loading")
            cm.addresses[sym] = addr
    cm.times["load"] = time.perf_counter() - t
    cm._engine, cm._object = engine, obj_ref
    return cm


def compile_module(name: str, ir_text: str, symbols: tuple[str, ...]) -> CompiledModule:
    """Compile and load IR text written by hand rather than planned from a graph (e.g. the
    benchmark's FMA-peak kernels); the object cache, keyed by selections, is not used."""
    times: dict[str, float] = {}
    obj = build_object(name, ir_text, symbols, times) if symbols else b""
    entry = Entry(obj, tuple(symbols), _ir_text=ir_text)
    module = load_module(name, entry, "off")
    module.times = {**times, **module.times}
    return module
