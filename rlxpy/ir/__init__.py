"""The IR: tensor types, the op vocabulary, graphs, the builder, the verifier and the text form.

This package knows nothing of passes, interpreters or code generation.
"""

from .builder import GraphBuilder, Value
from .graph import Graph, Node
from .ops import OPS, Attr, OpDef, get_op
from .parser import parse_graph
from .printer import print_graph
from .textio import load_graph, save_graph
from .types import DTYPES, TensorType, f32
from .verify import verify

__all__ = [
    "DTYPES", "OPS", "Attr", "Graph", "GraphBuilder", "Node", "OpDef", "TensorType", "Value",
    "f32", "get_op", "load_graph", "parse_graph", "print_graph", "save_graph", "verify",
]
