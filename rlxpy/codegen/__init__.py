"""The llvmlite backend: every node lowered to an LLVM function, one module and JIT per graph.

    exe = compile_llvm(graph)            # graph: params bound, already optimised
    exe(x=...)                           # native kernels, interpreter fallback where no rule applies
    print(exe.report()); exe.llvm_ir; exe.optimized_llvm_ir; exe.asm

    rule.py        what a rule is (match -> Spec -> emit) and the registry
    rules/         every lowering rule, registered in rules/__init__.py
    emitters.py    every pointwise op's emitter (floats and vectors alike)
    emit/          reusable emitters: builders, vectors, register tile, upsampler, epilogue
    select.py      a rule per node (no IR); kernel.py its record; key.py the cache key
    module.py      emission; jit.py, cache.py, target.py, isa.py: code, cache, machine
    runtime/       buffers, threads, calls, per-node checks; the executable
"""

from . import emitters, rules  # noqa: F401  (register the emitters and the rules)
from .backend import compile_llvm
from .kernel import Alias, Fallback, Kernel
from .rule import RULES, Rule, Spec, Unsupported
from .runtime import LLVMExecutable

__all__ = ["RULES", "Alias", "Fallback", "Kernel", "LLVMExecutable", "Rule", "Spec", "Unsupported", "compile_llvm"]
