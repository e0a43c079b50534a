"""Emission: one LLVM module with one function per kernel, each written by its rule from its Spec.

Needed only on an object-cache miss. A rule's `emit` sees the Spec and a `KernelBuilder` whose
function already exists (signature from the Spec); it writes the body, and the function is closed
here. Nothing is planned or undone: selection already decided every kernel.
"""

from __future__ import annotations

import llvmlite.ir as ir

from .emit.builder import KernelBuilder
from .kernel import Kernel
from .target import host, target_machine


def emit_module(name: str, kernels: list[Kernel]) -> str:
    """The LLVM IR text of a module holding every kernel."""
    module = ir.Module(name=name)
    module.triple = host().triple
    module.data_layout = str(target_machine().target_data)
    for kernel in kernels:
        spec = kernel.spec
        k = KernelBuilder(module, kernel.symbol, spec.operands, spec.constants, spec.extent)
        kernel.lowering.emit(spec, k)
        k.b.ret_void()
    return str(module)
