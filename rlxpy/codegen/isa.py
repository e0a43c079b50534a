"""The host's SIMD: vector width and register file, read from the CPU features LLVM reports.

A CPU name says little (a znver4 may have AVX-512 hidden by its hypervisor, a Xeon may report
"rocketlake"), so the width comes from the feature string: 16 float lanes and 32 vector registers
with avx512f, 8 lanes and 16 registers with avx2 + fma, otherwise 4 lanes of SSE. Kernels that
size their register tiles from this stay correct on any x86-64: a narrower vector than the host
has is always legal, which is what lets tests force the AVX2 shape on an AVX-512 host
(`RLXPY_VECTOR_LANES=8`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import config
from ..errors import RlxError
from .target import host


@dataclass(frozen=True)
class VectorISA:
    lanes: int                 # float32 lanes of one vector register
    registers: int             # architectural vector registers
    fma: bool                  # fused multiply-add in hardware
    name: str

    def describe(self) -> str:
        return f"{self.name}: {self.lanes} x f32 lanes, {self.registers} vector registers"


def _features() -> set[str]:
    return {f[1:] for f in host().features.split(",") if f.startswith("+")}


def host_isa() -> VectorISA:
    """The widest vectors this host runs (narrowed by $RLXPY_VECTOR_LANES = 4, 8 or 16)."""
    feats = _features()
    if "avx512f" in feats and "fma" in feats:
        best = VectorISA(16, 32, True, "avx512")
    elif "avx2" in feats and "fma" in feats:
        best = VectorISA(8, 16, True, "avx2")
    elif "avx" in feats:
        best = VectorISA(8, 16, False, "avx")
    else:
        best = VectorISA(4, 16, False, "sse")
    lanes = config.vector_lanes()
    if lanes is None:
        return best
    if lanes > best.lanes:
        raise RlxError(f"RLXPY_VECTOR_LANES={lanes}: this CPU's widest vectors have {best.lanes} float lanes")
    if lanes == best.lanes:
        return best
    return VectorISA(lanes, 16, best.fma, {8: "avx2" if best.fma else "avx", 4: "sse"}[lanes])


def identity() -> str:
    """What, beyond the host's features, decides the vector ISA that rules see (for the cache key)."""
    return f"RLXPY_VECTOR_LANES={config.vector_lanes()!r}"
