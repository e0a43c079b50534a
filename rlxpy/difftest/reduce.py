"""Delta debugging for graphs, in the spirit of llvm-reduce and C-Reduce: shrink a failing case
while the same mismatch (same stage, same pass or op) persists.

Each round tries, in order, transformations that make the case smaller, keeping one whenever the
mismatch survives it, until none does:

  drop an output                      (keep at least one)
  shorten an output                   it takes an operand of the node that computed it
  cut a value loose                   a node becomes a new input holding the value it computed,
                                      so everything downstream still sees the same numbers
  freeze a value                      a node becomes a const holding that value
  bypass a node                       its users use one of its operands of the same type instead
  merge leaves                        an input or const is replaced by another of the same type
  squeeze                             a leading axis of size 1 is dropped from every value of
                                      rank >= 3 (perms, axes and shapes follow)
  shrink a dimension                  a size s becomes 1 or s // 2 in every type, attribute and
                                      array it appears in (consts and inputs are sliced)

and after each kept step, nodes, inputs and consts that no output needs are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

import numpy as np

from ..errors import RlxError
from ..interp import evaluate
from ..ir.graph import Graph, Node
from ..ir.ops import OPS, Step
from ..ir.types import TensorType
from ..ir.verify import verify
from .check import Mismatch, check_case


@dataclass
class Reduced:
    graph: Graph
    inputs: dict[str, np.ndarray]
    mismatch: Mismatch
    steps: int           # transformations kept
    tries: int           # transformations tried


Variant = tuple[str, Graph, dict[str, np.ndarray]]


def reduce_case(graph: Graph, inputs: Mapping[str, np.ndarray], *, pipeline: str = "default",
                target: str = "interp", log: Callable[[str], None] | None = None,
                max_tries: int = 2000, on_try: Callable[[int, Graph], None] | None = None) -> Reduced:
    """The smallest case found that fails like `graph` does (params must already be bound).

    `log` gets a line for every transformation kept; `on_try` is called for every one tried
    with the number tried so far and the smallest case yet."""
    first = check_case(graph, inputs, pipeline=pipeline, target=target).first
    if first is None:
        raise RlxError("the case does not fail: nothing to reduce")
    graph, inputs = prune(graph, dict(inputs))
    steps = tries = 0

    def same(candidate: Graph, data: dict[str, np.ndarray]) -> Mismatch | None:
        got = check_case(candidate, data, pipeline=pipeline, target=target).first
        return got if got is not None and got.signature == first.signature else None

    progress = True
    mismatch = first
    while progress and tries < max_tries:
        progress = False
        for what, candidate, data in _variants(graph, inputs):
            tries += 1
            if on_try:
                on_try(tries, graph)
            try:
                candidate = verify(candidate)
            except RlxError:
                continue
            candidate, data = prune(candidate, data)
            if _measure(candidate) >= _measure(graph):      # only strictly smaller cases: no loops
                continue
            found = same(candidate, data)
            if found:
                graph, inputs, mismatch, progress = candidate, data, found, True
                steps += 1
                if log:
                    log(f"reduce: {what}: {len(graph)} nodes, {_size(graph)} elements")
                break
            if tries >= max_tries:
                break
    return Reduced(graph, inputs, mismatch, steps, tries)


def _size(graph: Graph) -> int:
    return sum(n.type.numel for n in graph.nodes)


def _measure(graph: Graph) -> tuple[int, int, int, int]:
    """What "smaller" means: fewer nodes, then fewer that compute (a const is simpler than the op
    that made its value, and unlike the op it can lose axes), then fewer elements, then fewer axes."""
    computing = sum(not OPS[n.op].is_source for n in graph.nodes)
    return len(graph), computing, _size(graph), sum(n.type.rank for n in graph.nodes)


def prune(graph: Graph, inputs: dict[str, np.ndarray]) -> tuple[Graph, dict[str, np.ndarray]]:
    """Drop every node (inputs included) that no output needs, and their input data."""
    live = graph.live()
    nodes = [n for n in graph.nodes if n.name in live]
    kept = {n.attrs["name"] for n in nodes if n.op == "input"}
    return graph.with_nodes(nodes), {k: v for k, v in inputs.items() if k in kept}


def _variants(graph: Graph, inputs: dict[str, np.ndarray]) -> Iterator[Variant]:
    values = evaluate(graph, inputs, all_values=True)
    names = {n.attrs["name"] for n in graph.inputs}

    # drop an output
    if len(graph.outputs) > 1:
        for out in graph.outputs:
            yield "drop output " + out, graph.with_nodes(graph.nodes, {k: v for k, v in graph.outputs.items() if k != out}), inputs

    # an output takes an operand of the node that computes it (what follows it is dropped)
    for out, value in graph.outputs.items():
        node = graph[value]
        for operand in dict.fromkeys(node.operands):
            if not OPS[graph[operand].op].is_source:
                yield (f"output {out} takes %{operand}", graph.with_nodes(graph.nodes, {**graph.outputs, out: operand}),
                       inputs)

    computed = [n for n in graph.nodes if not OPS[n.op].is_source]
    # cut a value loose: it becomes an input with the value it had (latest nodes first: big cuts)
    for node in reversed(computed):
        name = _fresh(names, "v")
        cut = node.with_(op="input", operands=(), attrs={"name": name}, value=None, origin="reduce")
        yield f"cut %{node.name} into input {name}", _replace(graph, node, cut), {**inputs, name: values[node.name]}
    # freeze a value into a const
    for node in reversed(computed):
        data = np.array(values[node.name], np.float32)
        data.setflags(write=False)
        frozen = node.with_(op="const", operands=(), attrs={}, value=data, origin="reduce")
        yield f"freeze %{node.name}", _replace(graph, node, frozen), inputs
    # bypass a node: its users take one of its same-typed operands
    for node in computed:
        for operand in dict.fromkeys(node.operands):
            if graph.type_of(operand) == node.type:
                yield f"bypass %{node.name}", _rename(graph, node.name, operand), inputs
    # merge leaves of the same type
    leaves = [n for n in graph.nodes if OPS[n.op].is_source]
    for i, a in enumerate(leaves):
        for b in leaves[i + 1:]:
            if a.type == b.type:
                yield f"merge %{b.name} into %{a.name}", _leaves_first(_rename(graph, b.name, a.name)), inputs
    # drop a leading unit axis from every value of rank >= 3 that has one
    yield "squeeze a leading unit axis", *_squeeze(graph, inputs)
    # shrink a dimension everywhere it appears (with its double, so upsampled pairs stay paired)
    sizes = sorted({d for n in graph.nodes for d in n.type.shape if d > 1}, reverse=True)
    for s in sizes:
        for smaller in dict.fromkeys((1, s // 2)):
            yield f"shrink {s} -> {smaller}", *_shrink(graph, inputs, {s: smaller})
            if 2 * s in sizes:
                yield f"shrink {s}, {2 * s} -> {smaller}, {2 * smaller}", *_shrink(graph, inputs, {s: smaller, 2 * s: 2 * smaller})


def _fresh(taken: set[str], stem: str) -> str:
    i = 0
    while f"{stem}{i}" in taken:
        i += 1
    return f"{stem}{i}"


def _replace(graph: Graph, old: Node, new: Node) -> Graph:
    return graph.with_nodes([new if n is old else n for n in graph.nodes])


def _rename(graph: Graph, old: str, new: str) -> Graph:
    """Drop `old`; its users and outputs use `new` instead."""
    nodes = [n.with_(operands=tuple(new if o == old else o for o in n.operands)) if old in n.operands else n
             for n in graph.nodes if n.name != old]
    outputs = {k: (new if v == old else v) for k, v in graph.outputs.items()}
    return graph.with_nodes(nodes, outputs)


def _leaves_first(graph: Graph) -> Graph:
    """Inputs and consts first (they use nothing), so a merged leaf is defined before its users."""
    return graph.with_nodes(sorted(graph.nodes, key=lambda n: not OPS[n.op].is_source))


def _with_roles(opdef, attrs: dict, change) -> dict:
    """`attrs` with `change(role, value)` applied to every attribute that has a role, the steps of
    an epilogue included (their axes are the node's own)."""
    out = dict(attrs)
    for name, attr in opdef.attrs.items():
        if name not in out:
            continue
        if attr.kind == "steps":
            out[name] = tuple(Step(st.op, tuple(_with_roles(st.opdef, st.attributes, change).items()))
                              for st in out[name])
        elif attr.role:
            out[name] = change(attr.role, out[name])
    return out


def _shrink(graph: Graph, inputs: dict[str, np.ndarray], sizes: dict[int, int]) -> tuple[Graph, dict]:
    """Every dimension of a size in `sizes` takes the new size, in types, in the attributes that
    spell shapes or sizes, and in the data of consts and inputs (sliced)."""
    def shape(dims):
        return tuple(sizes.get(d, d) for d in dims)

    def change(role, value):
        if role == "shape":
            return shape(value)
        if role == "size":
            return sizes.get(value, value)
        return value

    def cut(array: np.ndarray) -> np.ndarray:
        out = np.array(array[tuple(slice(0, sizes.get(d, d)) for d in array.shape)], np.float32)
        out.setflags(write=False)
        return out

    nodes = []
    for n in graph.nodes:
        attrs = _with_roles(OPS[n.op], n.attrs, change)
        value = None if n.value is None else cut(n.value)
        nodes.append(n.with_(type=TensorType(shape(n.type.shape)), attrs=attrs, value=value))
    return graph.with_nodes(nodes), {k: cut(v) for k, v in inputs.items()}


def _squeeze(graph: Graph, inputs: dict[str, np.ndarray]) -> tuple[Graph, dict]:
    """Drop axis 0 from every value of rank >= 3 whose axis 0 has size 1; attributes that name
    axes follow. Mixed cases that no longer type-check are rejected by the verifier."""
    def squeezable(shape) -> bool:
        return len(shape) >= 3 and shape[0] == 1

    def change(role, value):
        if role == "perm" and value and value[0] == 0:
            return tuple(p - 1 for p in value[1:])
        if role == "axis" and value > 0:
            return value - 1
        if role == "shape":
            return value[1:]
        return value

    nodes = []
    for n in graph.nodes:
        if squeezable(n.type.shape):
            attrs = _with_roles(OPS[n.op], n.attrs, change)
            value = None if n.value is None else n.value.reshape(n.value.shape[1:])
            n = n.with_(type=TensorType(n.type.shape[1:]), attrs=attrs, value=value)
        nodes.append(n)
    data = {k: v.reshape(v.shape[1:]) if squeezable(v.shape) else v for k, v in inputs.items()}
    return graph.with_nodes(nodes), data
