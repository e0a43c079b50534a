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
for the value. They are real methods of the class, with the signature and docstring of their
declaration (`help(GraphBuilder.upsample_add)`, `inspect.signature(...)` show operands, attribute
kinds, defaults and choices); an op declared after this module is imported is reached through
`__getattr__` the same way. Types are inferred as the graph is built, so a mistake is reported at
the call that made it.
"""

from __future__ import annotations

import inspect
import types
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np

from ..errors import VerifyError
from .graph import Graph, Node
from .ops import OPS, REQUIRED, OpDef, OpTypeError, Step
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
        return self._source("input", {"name": name}, shape, dtype, value_name or name)

    def param(self, name: str, shape: Sequence[int], dtype: str = "f32", *, value_name: str | None = None) -> Value:
        """A weight bound at compile time from `params[name]` (e.g. a checkpoint key)."""
        return self._source("param", {"name": name}, shape, dtype, value_name)

    def const(self, data: Any, *, name: str | None = None) -> Value:
        """A constant tensor (converted to float32; the node keeps a read-only copy)."""
        array = np.array(data, dtype=np.float32, copy=True)
        array.setflags(write=False)
        return self._source("const", {}, array.shape, "f32", name, value=array)

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
            rtype = opdef.result_type([v.type for v in operands], canonical)
        except OpTypeError as e:
            raise VerifyError(f"{label} ({opname}): {e}") from None
        return self._add(opname, tuple(v.name for v in operands), canonical, rtype, name)

    def __getattr__(self, opname: str):
        opdef = OPS.get(opname)
        if opdef is None or opdef.is_source or opname.startswith("__"):
            raise AttributeError(f"GraphBuilder has no op or attribute '{opname}'")
        return types.MethodType(op_method(opdef), self)

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

    def _source(self, op: str, attrs: dict, shape: Sequence[int], dtype: str, name: str | None,
                value: np.ndarray | None = None) -> Value:
        name = self._fresh() if name is None else name
        what = f"node %{name} ({op} {attrs['name']!r})" if "name" in attrs else f"node %{name} ({op})"
        try:
            dims = tuple(shape)
        except TypeError:
            raise VerifyError(f"{what}: the shape must be a sequence of positive integers, got {shape!r}") from None
        try:
            rtype = TensorType(dims, dtype)
        except ValueError as e:   # a bad dimension or element type, or over the size limit
            raise VerifyError(f"{what}: {e}") from None
        return self._add(op, (), attrs, rtype, name, value)

    def _fresh(self) -> str:
        while str(self._counter) in self._names:
            self._counter += 1
        self._counter += 1
        return str(self._counter - 1)

    def _add(self, op: str, operands: tuple[str, ...], attrs: dict, rtype: TensorType,
             name: str | None, value: np.ndarray | None = None) -> Value:
        if name is None:
            name = self._fresh()
        if name in self._names:
            raise VerifyError(f"duplicate name %{name} ({op})")
        self._names.add(name)
        self.nodes.append(Node(name, op, operands, attrs, rtype, value, self.origin))
        return Value(name, rtype, self)


# -- one method per compute op, made from its declaration ------------------------------------------

_ANNOTATIONS = {"int": int, "float": float, "bool": bool, "str": str, "ints": Sequence[int], "steps": Sequence[Step]}


def op_signature(opdef: OpDef) -> inspect.Signature:
    """`(self, a, b, /, *epilogue, attr: kind = default, ..., name: str | None = None) -> Value`."""
    P = inspect.Parameter
    params = [P("self", P.POSITIONAL_ONLY)]
    params += [P(o, P.POSITIONAL_ONLY, annotation=Value) for o in opdef.fixed_operands]
    if opdef.variadic:
        params.append(P(opdef.operands[-1][1:], P.VAR_POSITIONAL, annotation=Value))
    for key, spec in opdef.attrs.items():
        kind = Literal[spec.choices] if spec.choices else _ANNOTATIONS.get(spec.kind, Any)
        default = P.empty if spec.default is REQUIRED else spec.default
        params.append(P(key, P.KEYWORD_ONLY, default=default, annotation=kind))
    params.append(P("name", P.KEYWORD_ONLY, default=None, annotation=str | None))
    return inspect.Signature(params, return_annotation=Value)


def op_doc(opdef: OpDef) -> str:
    lines = [opdef.summary, ""]
    operands = list(opdef.fixed_operands) + ([f"{opdef.operands[-1][1:]} (any number more)"] if opdef.variadic else [])
    lines.append(f"Operands: {', '.join(operands) or 'none'}.")
    if opdef.attrs:
        lines.append("Attributes (keywords):")
        for key, spec in opdef.attrs.items():
            lines.append(f"    {key}: {spec.describe()}")
    lines.append("name: the result's value name (default: the next free number).")
    lines.append("Returns the result's Value; a mistake raises VerifyError naming the node.")
    return "\n".join(lines)


def op_method(opdef: OpDef):
    """The builder method of a compute op: `b.OP(*operands, name=None, **attrs)`."""
    opname = opdef.name

    def method(self: GraphBuilder, *operands: Value, name: str | None = None, **attrs: Any) -> Value:
        return self.op(opname, *operands, name=name, **attrs)

    method.__name__ = opname
    method.__qualname__ = f"GraphBuilder.{opname}"
    method.__doc__ = op_doc(opdef)
    method.__signature__ = op_signature(opdef)
    return method


for _name, _opdef in OPS.items():
    if not _opdef.is_source and not hasattr(GraphBuilder, _name):
        setattr(GraphBuilder, _name, op_method(_opdef))
del _name, _opdef
