"""GraphBuilder: build a graph with one method per op.

    b = GraphBuilder("block")
    x = b.input("x", (2, 8, 16))
    w = b.param("w", (16, 32))
    y = b.bias_add(b.matmul(x, w), b.const(np.ones(32, np.float32)))
    b.output("y", b.transpose(y, perm=(0, 2, 1)))
    graph = b.build()          # verified

The compute-op methods (`matmul`, `bias_add`, `upsample_add`, `scale`, `transpose`, `reshape`,
`pos_encoding`, ...) are made from the op declarations in `rlxpy.ir.ops`, so every declared op has
one; each takes its operands positionally and its attributes by keyword, plus an optional `name=`
for the value. Types are inferred as the graph is built, so a mistake is reported at the call that
made it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import VerifyError
from .graph import Graph, Node
from .ops import OPS, OpTypeError
from .types import TensorType
from .verify import verify


@dataclass(frozen=True)
class Value:
    """A handle on a value being built: its SSA name and type."""

    name: str
    type: TensorType
    builder: "GraphBuilder" = field(repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape


class GraphBuilder:
    def __init__(self, name: str = "main", origin: str = "builder"):
        self.name = name
        self.origin = origin
        self.nodes: list[Node] = []
        self.outputs: dict[str, str] = {}
        self._names: set[str] = set()
        self._counter = 0

    # -- sources -------------------------------------------------------------------------------

    def input(self, name: str, shape: Sequence[int], dtype: str = "f32", *, value_name: str | None = None) -> Value:
        """A run-time input, passed to the executable as `name=array`."""
        return self._add("input", (), {"name": name}, TensorType(tuple(shape), dtype), value_name or name)

    def param(self, name: str, shape: Sequence[int], dtype: str = "f32", *, value_name: str | None = None) -> Value:
        """A weight bound at compile time from `params[name]` (e.g. a checkpoint key)."""
        return self._add("param", (), {"name": name}, TensorType(tuple(shape), dtype), value_name)

    def const(self, data: Any, *, name: str | None = None) -> Value:
        """A constant tensor (converted to float32; the node keeps a read-only copy)."""
        array = np.array(data, dtype=np.float32, copy=True)
        array.setflags(write=False)
        return self._add("const", (), {}, TensorType(array.shape), name, value=array)

    # -- compute ops ---------------------------------------------------------------------------

    def op(self, opname: str, *operands: Value, name: str | None = None, **attrs: Any) -> Value:
        """Add a node of any declared op."""
        opdef = OPS.get(opname)
        label = f"%{name}" if name else "new node"
        if opdef is None:
            raise VerifyError(f"{label}: unknown op '{opname}'; known ops: {', '.join(sorted(OPS))}")
        if opdef.is_source:
            raise VerifyError(f"{label}: use GraphBuilder.{opname}() to add a '{opname}'")
        for i, v in enumerate(operands):
            if not isinstance(v, Value) or v.builder is not self:
                raise VerifyError(f"{label} ({opname}): operand {i} is not a value of this builder: {v!r}")
        try:
            opdef.check_arity(len(operands))
            canonical = opdef.normalize_attrs(attrs)
            rtype = opdef.infer([v.type for v in operands], canonical)
        except OpTypeError as e:
            raise VerifyError(f"{label} ({opname}): {e}") from None
        return self._add(opname, tuple(v.name for v in operands), canonical, rtype, name)

    def __getattr__(self, opname: str):
        opdef = OPS.get(opname)
        if opdef is None or opdef.is_source:
            raise AttributeError(f"GraphBuilder has no op or attribute '{opname}'")

        def method(*operands: Value, name: str | None = None, **attrs: Any) -> Value:
            return self.op(opname, *operands, name=name, **attrs)

        method.__name__ = opname
        method.__doc__ = opdef.summary
        return method

    def __dir__(self):
        return sorted(set(super().__dir__()) | {n for n, d in OPS.items() if not d.is_source})

    # -- outputs -------------------------------------------------------------------------------

    def output(self, name: str, value: Value) -> None:
        if name in self.outputs:
            raise VerifyError(f"duplicate output name '{name}'")
        if not isinstance(value, Value) or value.builder is not self:
            raise VerifyError(f"output '{name}': {value!r} is not a value of this builder")
        self.outputs[name] = value.name

    def build(self) -> Graph:
        """The verified graph."""
        return verify(Graph(self.name, self.nodes, self.outputs))

    # -- internals -----------------------------------------------------------------------------

    def _add(self, op: str, operands: tuple[str, ...], attrs: dict, rtype: TensorType,
             name: str | None, value: np.ndarray | None = None) -> Value:
        if name is None:
            while str(self._counter) in self._names:
                self._counter += 1
            name = str(self._counter)
            self._counter += 1
        if name in self._names:
            raise VerifyError(f"duplicate name %{name} ({op})")
        self._names.add(name)
        self.nodes.append(Node(name, op, operands, attrs, rtype, value, self.origin))
        return Value(name, rtype, self)
