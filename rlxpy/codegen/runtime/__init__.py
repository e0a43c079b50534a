"""The runtime of native code: buffers, threads, kernel calls and the per-node check against the
interpreter (`Program`), and the executable users call (`LLVMExecutable`)."""

from .executable import LLVMExecutable
from .buffers import ALIGNMENT, aligned_empty
from .program import Program

__all__ = ["ALIGNMENT", "LLVMExecutable", "Program", "aligned_empty"]
