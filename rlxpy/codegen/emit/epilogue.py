"""Pointwise steps applied to values in registers: a matmul's epilogue, or a pointwise node's own op.

At `match` time a rule lowers the steps into `LoweredStep`s (plain data, part of its Spec): each
step's op, attributes, and for each operand after the first, which kernel operand it is, how it is
read (its op's `Access`) and its shape. At `emit` time the rule gives, for each such operand, a
`View` (its pointer and dims, which may be run-time values in a shared body) and applies the steps
to a float at output coordinates (`apply_scalar`), or to a vector of consecutive results
(`VectorSteps`). Reading an operand is done here once per Access kind, scalar and vector; what a
step computes from the values read is its op's emitter (`values.EMITTERS`).

A vector holds `lanes` results that run through the output's axes `span` in row-major order
starting at lane 0's coordinates: span (last axis,) is a run within one row; span (H, W) is a run
through a plane that may wrap rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import llvmlite.ir as ir

from ...ir.graph import Graph, Node
from ...ir.ops import OPS, Access, Step, epilogue_operands
from .builder import FunctionBuilder, Int, row_major_strides
from .simd import splat, vload
from .upsample import sample, vector_sampler
from .values import EMITTERS, Values


@dataclass(frozen=True)
class StepOperand:
    index: int                  # among the kernel's operand pointers
    access: Access
    shape: tuple[int, ...]


@dataclass(frozen=True)
class LoweredStep:
    op: str
    attrs: tuple[tuple[str, Any], ...]
    operands: tuple[StepOperand, ...]

    @property
    def attributes(self) -> dict[str, Any]:
        return dict(self.attrs)

    def mode(self, access: Access) -> Any:
        """The attribute an access reads (the axis of a bias, the mode of an upsample)."""
        return self.attributes[access.attr]


def lower_steps(steps: Sequence[Step], node: Node, graph: Graph, first: int) -> tuple[LoweredStep, ...]:
    """`steps` of `node` whose extra operands are the node's operands from `first` on."""
    extra = list(range(first, len(node.operands)))
    out = []
    for step, indices in zip(steps, epilogue_operands(tuple(steps), extra)):
        access = step.opdef.access[1:]
        operands = tuple(StepOperand(i, a, graph.type_of(node.operands[i]).shape) for i, a in zip(indices, access))
        out.append(LoweredStep(step.op, step.attrs, operands))
    return tuple(out)


def node_step(node: Node, graph: Graph) -> LoweredStep:
    """A pointwise node as one step applied to its first operand."""
    opdef = OPS[node.op]
    operands = tuple(StepOperand(i, a, graph.type_of(node.operands[i]).shape)
                     for i, a in enumerate(opdef.access) if i > 0)
    return LoweredStep(node.op, tuple(node.attrs.items()), operands)


@dataclass
class View:
    """An operand as the emitted code reads it: its pointer and dims (ints or run-time values)."""

    ptr: ir.Value
    dims: Sequence[Int]

    def strides(self, f: FunctionBuilder) -> list[Int]:
        if all(isinstance(d, int) for d in self.dims):
            return list(row_major_strides(self.dims))
        out: list[Int] = []
        step: Int = 1
        for d in reversed(self.dims):
            out.append(step)
            step = f.mul(step, d)
        return out[::-1]


# -- one float ------------------------------------------------------------------------------------


def read_scalar(f: FunctionBuilder, step: LoweredStep, operand: StepOperand, view: View,
                coords: Sequence[Int], plane: Int | None = None) -> ir.Value:
    """Operand `operand` of `step` at the result's coordinates `coords` (`plane`: the flat index
    of coords[:-2], when the caller has it)."""
    kind = operand.access.kind
    if kind == "axis":
        return f.load(view.ptr, coords[step.mode(operand.access) % len(coords)])
    if kind == "elementwise":
        lead = len(coords) - len(view.dims)
        at = [0 if d == 1 else c for d, c in zip(view.dims, coords[lead:])]
        return f.load(view.ptr, f.dot(at, view.strides(f)))
    if kind == "upsample2x":
        hc, wc = view.dims[-2], view.dims[-1]
        if plane is None:                      # the coarse level has the result's leading axes
            plane = f.dot(coords[:-2], View(view.ptr, view.dims[:-2]).strides(f))
        return sample(f, step.mode(operand.access), view.ptr, f.mul(plane, f.mul(hc, wc)), coords[-2], coords[-1],
                      hc, wc, wc, 1)
    raise AssertionError(f"no reader for access {kind!r}")


def apply_scalar(f: FunctionBuilder, steps: Sequence[LoweredStep], value: ir.Value, coords: Sequence[Int],
                 views: Mapping[int, View], plane: Int | None = None) -> ir.Value:
    """`value` (the result at `coords`) through every step."""
    v = Values(f)
    for step in steps:
        args = [read_scalar(f, step, o, views[o.index], coords, plane) for o in step.operands]
        value = EMITTERS[step.op](v, value, *args, **step.attributes)
    return value


# -- a vector ---------------------------------------------------------------------------------------


def vector_refusal(steps: Sequence[LoweredStep], shape: tuple[int, ...], span: tuple[int, ...]) -> str | None:
    """Why vectors running through the axes `span` of a result of `shape` cannot read some
    step's operand, or None."""
    rank = len(shape)
    row = tuple(span) == (rank - 1,)
    for step in steps:
        for o in step.operands:
            kind = o.access.kind
            if kind == "axis":
                axis = step.mode(o.access) % rank
                if axis in span and not row:
                    return f"{step.op} reads along axis {axis}, which the vectors cross rows of"
            elif kind == "upsample2x" and not row:
                return f"{step.op} upsamples rows, and the vectors cross rows"
            elif kind == "elementwise":
                lead = rank - len(o.shape)
                along = [o.shape[a - lead] if a >= lead else 1 for a in span]
                contiguous = list(span) == list(range(span[0], rank)) and all(
                    o.shape[a - lead] == shape[a] for a in range(max(span[0], lead), rank))
                if any(d != 1 for d in along) and not contiguous:
                    return f"{step.op} reads an operand of shape {list(o.shape)} across the vectors' axes"
    return None


class VectorSteps:
    """The steps applied to one vector position. Made once per position (the per-position work,
    such as upsampling taps, is emitted then); `apply` emits the per-value reads and arithmetic.

    `fixed` holds the coordinates of lane 0 that are known when it is made (for a span within a
    row: the row and first column); `apply` takes the rest (and the flat `plane` index of the
    leading coordinates, when the caller has it)."""

    def __init__(self, f: FunctionBuilder, steps: Sequence[LoweredStep], views: Mapping[int, View],
                 lanes: int, rank: int, span: tuple[int, ...], fixed: Mapping[int, Int]):
        self.f, self.steps, self.views = f, list(steps), views
        self.lanes, self.rank, self.span = lanes, rank, tuple(span)
        self.fixed = dict(fixed)
        self.readers: dict[tuple[int, int], Callable] = {}
        for s, step in enumerate(self.steps):
            for j, o in enumerate(step.operands):
                self.readers[s, j] = self._prepare(step, o)

    def _prepare(self, step: LoweredStep, o: StepOperand) -> Callable[[dict, Int | None], ir.Value]:
        f, view, lanes = self.f, self.views[o.index], self.lanes
        kind = o.access.kind
        if kind == "axis":
            axis = step.mode(o.access) % self.rank
            if axis in self.span:                      # a run along the bias's own axis
                return lambda c, plane: vload(f, view.ptr, c[axis], lanes)
            return lambda c, plane: splat(f, f.load(view.ptr, c[axis]), lanes)
        if kind == "upsample2x":
            oh, ow = self.fixed[self.rank - 2], self.fixed[self.rank - 1]
            hc, wc = view.dims[-2], view.dims[-1]
            read = vector_sampler(f, step.mode(o.access), view.ptr, oh, ow, hc, wc, lanes)

            def upsampled(c: dict, plane: Int | None) -> ir.Value:
                if plane is None:                      # the coarse plane has the result's leading axes
                    lead = View(view.ptr, view.dims[:-2])
                    plane = f.dot([c[a] for a in range(self.rank - 2)], lead.strides(f))
                return read(f.mul(plane, f.mul(hc, wc)))
            return upsampled
        if kind == "elementwise":
            strides = view.strides(f)
            lead = self.rank - len(view.dims)

            def elementwise(c: dict, plane: Int | None) -> ir.Value:
                at = [0 if d == 1 else c[lead + i] for i, d in enumerate(view.dims)]
                offset = f.dot(at, strides)
                if all(view.dims[a - lead] == 1 for a in self.span if a >= lead):
                    return splat(f, f.load(view.ptr, offset), lanes)
                return vload(f, view.ptr, offset, lanes)
            return elementwise
        raise AssertionError(f"no reader for access {kind!r}")

    def apply(self, value: ir.Value, coords: Mapping[int, Int], plane: Int | None = None) -> ir.Value:
        c = {**self.fixed, **coords}
        v = Values(self.f)
        for s, step in enumerate(self.steps):
            args = [self.readers[s, j](c, plane) for j in range(len(step.operands))]
            value = EMITTERS[step.op](v, value, *args, **step.attributes)
        return value
