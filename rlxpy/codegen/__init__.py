"""The llvmlite backend: every node lowered to an LLVM function, one module and JIT per graph.

    exe = compile_llvm(graph)            # graph: params bound, already optimised
    exe(x=...)                           # native kernels, interpreter fallback where no rule applies
    print(exe.report()); exe.llvm_ir; exe.optimized_llvm_ir; exe.asm

Lowering rules are registered per op name with `@lowering` (see `registry`); the rules for every
op of the IR live in the `lower_*` modules.
"""

from .backend import compile_llvm
from .executable import LLVMExecutable
from .registry import LOWERINGS, Alias, Kernel, Unsupported, lowering

__all__ = ["LOWERINGS", "Alias", "Kernel", "LLVMExecutable", "Unsupported", "compile_llvm", "lowering"]
