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

from .cache import Entry, KernelInfo
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
        mod = llvm.parse_assembly(ir_text)
        mod.verify()
        tm = target_machine()
        pto = llvm.create_pipeline_tuning_options(speed_level=host().opt_level)
        pb = llvm.create_pass_builder(tm, pto)
        pb.getModulePassManager().run(mod, pb)
        return mod


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
    _optimised: llvm.ModuleRef | None = field(default=None, repr=False)
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
            self._optimized_ir = str(self._optimised_module())
        return self._optimized_ir

    @property
    def asm(self) -> str:
        if self._asm is None:
            # from a fresh parse: code emission rewrites the module it is given (CodeGenPrepare)
            text = self.optimized_ir
            with LLVM_LOCK:
                self._asm = target_machine().emit_assembly(llvm.parse_assembly(text))
        return self._asm

    def _optimised_module(self) -> llvm.ModuleRef:
        if self._optimised is None:
            self._optimised = optimise(self.ir_text)
        return self._optimised


def build_object(name: str, ir_text: str, symbols: tuple[str, ...], times: dict[str, float]) -> bytes:
    """Optimise and emit object code for `ir_text`; every one of `symbols` must survive."""
    t = time.perf_counter()
    mod = optimise(ir_text)
    times["optimise"] = time.perf_counter() - t
    t = time.perf_counter()
    with LLVM_LOCK:
        obj = target_machine().emit_object(mod)
    times["codegen"] = time.perf_counter() - t
    defined = {f.name for f in mod.functions if not f.is_declaration}
    missing = sorted(set(symbols) - defined)
    if missing:
        raise RuntimeError(f"module {name}: the optimised module lost kernel(s) {', '.join(missing)}")
    return obj


def load_module(name: str, entry: Entry, cache_status: str) -> CompiledModule:
    """Load the entry's object code into a new engine and look up every kernel's address."""
    cm = CompiledModule(name, entry, cache_status)
    if not entry.kernels:                             # nothing native: no engine needed
        return cm
    t = time.perf_counter()
    with LLVM_LOCK:
        engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), new_target_machine())
        obj_ref = llvm.ObjectFileRef.from_data(entry.object_code)
        engine.add_object_file(obj_ref)
        engine.finalize_object()
        for sym in entry.symbols:
            # get_function_address on a missing name is a fatal LLVM error; the object's symbols
            # were checked when it was built, and a cached entry passed its checksum
            addr = engine.get_function_address(sym)
            if not addr:
                raise RuntimeError(f"module {name}: kernel {sym} has no address after loading")
            cm.addresses[sym] = addr
    cm.times["load"] = time.perf_counter() - t
    cm._engine, cm._object = engine, obj_ref
    return cm


def compile_module(name: str, ir_text: str, symbols: tuple[str, ...]) -> CompiledModule:
    """Compile and load IR text written by hand rather than planned from a graph (e.g. the
    benchmark's FMA-peak kernels); the object cache, keyed by plans, is not used."""
    times: dict[str, float] = {}
    obj = build_object(name, ir_text, symbols, times) if symbols else b""
    entry = Entry(obj, tuple(KernelInfo(s, 0, 0.0) for s in symbols), _ir_text=ir_text)
    module = load_module(name, entry, "off")
    module.times = {**times, **module.times}
    return module
