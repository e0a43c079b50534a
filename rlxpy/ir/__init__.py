"""The IR: tensor types, the op vocabulary, graphs, the builder and the verifier.

This package knows nothing of passes, interpreters or code generation.
"""

from .builder import GraphBuilder, Value
from .graph import Graph, Node
from .ops import OPS, Attr, OpDef, get_op
from .types import DTYPES, TensorType, f32
from .verify import verify

__all__ = [
    "DTYPES", "OPS", "Attr", "Graph", "GraphBuilder", "Node", "OpDef", "TensorType", "Value",
    "f32", "get_op", "verify",
]
