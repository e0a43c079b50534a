"""rlxpy: a small graph-IR compiler for ML blocks.

    import rlxpy
    exe = rlxpy.compile(graph, params=params, target="interp")
    out = exe(x0=..., x1=...)
"""

from .driver import compile
from .errors import (ConfigError, InputError, OptionError, OutOfMemoryError, ParseError, PassError, RlxError,
                     VerifyError, WeightsError)
from .executable import Executable
from .ir import Graph, GraphBuilder, TensorType, load_graph, parse_graph, print_graph, save_graph

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "Executable", "Graph", "GraphBuilder", "InputError", "OptionError", "OutOfMemoryError",
    "ParseError", "PassError", "RlxError",
    "TensorType", "VerifyError", "WeightsError", "compile", "load_graph", "parse_graph", "print_graph",
    "save_graph",
]
