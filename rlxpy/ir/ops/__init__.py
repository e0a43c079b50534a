"""The op vocabulary, each op declared once: operands, attributes, traits, type inference.

An op is data (an `OpDef`, see `opdef.py`), in the style of xDSL's declarative ops. Everything else
asks the declaration: the builder makes one method per op from it, the verifier checks nodes
against it, fusion reads its traits, and each backend registers its own rule for the op (the
interpreter in `rlxpy.interp.rules`, the LLVM lowering in `rlxpy.codegen`). Adding an op means one
declaration here plus one rule per backend (for a pointwise op, one emitter in
`rlxpy.codegen.emitters`, and it fuses and runs natively everywhere).

Type inference raises `OpTypeError` with a message that says what was expected; the verifier adds
the node's name to it.
"""

from __future__ import annotations

from ..opdef import (CONTRACTION, ELEMENTWISE, FUSED, LAYOUT, NULLARY, OPS, POINTWISE, REQUIRED, SOURCE,  # noqa: F401
                     TRAITS, VIEW, Access, Attr, OpDef, OpTypeError, Step, declare, get_op, with_trait)
# The declarations, one module per kind of op, in the order ops are listed:
from . import sources, pointwise, layout, contraction, nullary, fused, attention  # noqa: F401,E402
from .fused import apply_epilogue_types, epilogue_operands  # noqa: F401,E402
from .shapes import (bias_type, matmul_type, require_f32, result_of, transpose_type,  # noqa: F401,E402
                     upsample_add_type)
