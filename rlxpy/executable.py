"""What `rlxpy.compile` returns: a callable that checks its inputs and runs the compiled graph.

Inputs are checked against the graph before anything runs: every name known and given, the
declared shape, a float dtype. Other float dtypes and non-contiguous (or misaligned) arrays are
converted to contiguous float32. Output arrays a caller passes with `run(inputs, out={...})` are
checked too (shape, float32, C-contiguous, aligned, writable, not overlapping each other or the
inputs) and are then written in place; no conversion there, since the caller wants that memory.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .errors import InputError
from .interp import evaluate
from .ir.graph import Graph
from .ir.types import TensorType
from .memory import allocating


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
        with allocating(f"input '{name}' as contiguous float32 {list(t.shape)}", t.nbytes):
            out[name] = np.require(a, dtype=np.float32, requirements=("C", "A"))
    return out


def check_outputs(types: Mapping[str, TensorType], out: Mapping[str, object] | None,
                  inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Caller-provided output arrays, checked, or an `InputError` naming the culprit."""
    if out is None:
        return {}
    if not isinstance(out, Mapping):
        raise InputError(f"out= must be a dict of output name -> array, got {type(out).__name__}")
    unknown = sorted(set(out) - set(types))
    if unknown:
        raise InputError(f"out: unknown output '{unknown[0]}'; this graph returns {', '.join(map(repr, types))}")
    checked: dict[str, np.ndarray] = {}
    for name, a in out.items():
        want = f"a writable C-contiguous float32 array of shape {list(types[name].shape)}"
        if not isinstance(a, np.ndarray):
            raise InputError(f"out '{name}': expected {want}, got {type(a).__name__}")
        problem = None
        if a.dtype != np.float32:
            problem = f"dtype {a.dtype}"
        elif a.shape != types[name].shape:
            problem = f"shape {list(a.shape)}"
        elif not a.flags.c_contiguous:
            problem = "a non-contiguous array"
        elif not a.flags.aligned:
            problem = "a misaligned array"
        elif not a.flags.writeable:
            problem = "a read-only array"
        if problem:
            raise InputError(f"out '{name}': expected {want}, got {problem}")
        for other, b in checked.items():
            if np.may_share_memory(a, b):
                raise InputError(f"out '{name}' and out '{other}' share memory; each output needs its own array")
        for iname, b in inputs.items():
            if np.may_share_memory(a, b):
                raise InputError(f"out '{name}' shares memory with input '{iname}'; outputs must not overlap inputs")
        checked[name] = a
    return checked


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

    def run(self, inputs: Mapping[str, object], out: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Outputs by name; those named in `out` are written into the caller's arrays."""
        checked = check_inputs(self.input_types, inputs)
        return self._run(checked, check_outputs(self.output_types, out, checked))

    def _run(self, inputs: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def report(self) -> str:
        """Where each node runs."""
        return f"@{self.graph.name} on {self.target}: every node runs on the numpy interpreter"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} @{self.graph.name} target={self.target} nodes={len(self.graph)}>"


class InterpExecutable(Executable):
    """Runs the graph with the numpy interpreter."""

    target = "interp"

    def _run(self, inputs: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = evaluate(self.graph, inputs)
        for name, array in out.items():
            np.copyto(array, results[name])
            results[name] = array
        return results
