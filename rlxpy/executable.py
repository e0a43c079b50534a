"""What `rlxpy.compile` returns: a callable that checks its inputs and runs the compiled graph.

Inputs are checked against the graph before anything runs: every name known and given, the
declared shape, a float dtype. Other float dtypes and non-contiguous arrays are converted to
contiguous float32.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .errors import InputError
from .interp import evaluate
from .ir.graph import Graph
from .ir.types import TensorType


def check_inputs(types: Mapping[str, TensorType], given: Mapping[str, object]) -> dict[str, np.ndarray]:
    """Validated inputs as contiguous float32 arrays, or an `InputError` naming the culprit."""
    unknown = sorted(set(given) - set(types))
    if unknown:
        raise InputError(
            f"unknown input '{unknown[0]}'; this graph takes {', '.join(map(repr, types))}"
        )
    out = {}
    for name, t in types.items():
        if name not in given:
            raise InputError(f"missing input '{name}': expected a float32 array of shape {list(t.shape)}")
        a = given[name]
        if not isinstance(a, np.ndarray):
            try:
                a = np.asarray(a)
            except (ValueError, TypeError) as e:
                raise InputError(f"input '{name}': cannot be read as an array ({e})") from None
        if a.dtype.kind != "f":
            raise InputError(
                f"input '{name}': dtype {a.dtype} is not a float type; expected float32 of shape {list(t.shape)}"
            )
        if a.shape != t.shape:
            what = "rank" if a.ndim != len(t.shape) else "shape"
            raise InputError(
                f"input '{name}': wrong {what}: expected shape {list(t.shape)}, got {list(a.shape)}"
            )
        out[name] = np.ascontiguousarray(a, dtype=np.float32)
    return out


class Executable:
    """A compiled graph. Call it with the inputs by name; it returns the outputs by name."""

    target = "?"

    def __init__(self, graph: Graph, source: Graph | None = None):
        self.graph = graph                    # the graph that runs (after binding and passes)
        self.source = source or graph         # the graph as the caller gave it
        self.input_types = graph.input_types
        self.output_types = graph.output_types
        self.pass_log = None                  # the pass manager's RunLog, set by rlxpy.compile
        self.pipeline = ""

    def fusion_report(self) -> str:
        """Every fusion that applied, and every place one did not and why."""
        return self.pass_log.report("fuse-epilogue") if self.pass_log else "no passes ran"

    def __call__(self, **inputs: object) -> dict[str, np.ndarray]:
        return self.run(inputs)

    def run(self, inputs: Mapping[str, object]) -> dict[str, np.ndarray]:
        return self._run(check_inputs(self.input_types, inputs))

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} @{self.graph.name} target={self.target} nodes={len(self.graph)}>"


class InterpExecutable(Executable):
    """Runs the graph with the numpy interpreter."""

    target = "interp"

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return evaluate(self.graph, inputs)
