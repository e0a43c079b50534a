"""The host target: LLVM initialised once, one TargetMachine for this CPU, one lock for compile work.

The machine is built from the host CPU name AND its feature string: a CPU may report a name whose
default features it lacks (a znver4 with AVX-512 hidden by the hypervisor), and code built from the
name alone would then die with an illegal instruction.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache

import llvmlite
import llvmlite.binding as llvm

OPT_LEVEL = 3

# LLVM's global context and pass builders are not thread-safe: every parse, optimisation, code
# emission and engine creation holds this lock (running compiled kernels does not).
LLVM_LOCK = threading.RLock()


@dataclass(frozen=True)
class Host:
    triple: str
    cpu: str
    features: str
    opt_level: int
    llvm_version: str
    llvmlite_version: str

    def describe(self) -> str:
        return f"{self.triple}, cpu {self.cpu}, O{self.opt_level}, LLVM {self.llvm_version}"

    def cache_identity(self) -> str:
        """Everything about the toolchain and machine that changes the object code."""
        return "\n".join([
            f"triple={self.triple}", f"cpu={self.cpu}", f"features={self.features}",
            f"opt={self.opt_level}", f"llvm={self.llvm_version}", f"llvmlite={self.llvmlite_version}",
        ])


@lru_cache(maxsize=None)
def _initialise() -> None:
    # llvm.initialize() raises in llvmlite >= 0.45; the native target and printer are enough
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()


@lru_cache(maxsize=None)
def host() -> Host:
    _initialise()
    return Host(
        triple=llvm.get_process_triple(),
        cpu=llvm.get_host_cpu_name(),
        features=llvm.get_host_cpu_features().flatten(),
        opt_level=OPT_LEVEL,
        llvm_version=".".join(map(str, llvm.llvm_version_info)),
        llvmlite_version=llvmlite.__version__,
    )


def new_target_machine() -> llvm.TargetMachine:
    """A fresh machine: an MCJIT engine takes ownership of (and frees) the one it is given."""
    h = host()
    with LLVM_LOCK:
        target = llvm.Target.from_triple(h.triple)
        return target.create_target_machine(cpu=h.cpu, features=h.features, opt=h.opt_level,
                                            codemodel="jitdefault")


@lru_cache(maxsize=None)
def target_machine() -> llvm.TargetMachine:
    """The shared machine for optimisation and code emission; never hand it to an engine."""
    return new_target_machine()
