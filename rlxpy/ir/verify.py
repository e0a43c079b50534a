"""The verifier: every graph that is built, parsed or rewritten by a pass goes through it.

It rejects, naming the node and what was expected: unknown ops, duplicate names, dangling and
forward references, cycles, wrong operand counts, bad attributes, wrong shapes and dtype
mismatches, and outputs that name no value. Graph structure (cycles) is checked with networkx.
"""

from __future__ import annotations

import re

import networkx as nx
import numpy as np

from ..errors import VerifyError, clip
from .graph import Graph, Node
from .ops import OPS, OpTypeError
from .types import TensorType

VALUE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.$-]*\Z")
SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")


def where(node: Node) -> str:
    """How an error names a node: `%name (op)`, plus the line and column when it was parsed."""
    loc = f" at line {node.loc[0]}, column {node.loc[1]}" if node.loc else ""
    return f"node %{node.name} ({node.op}){loc}"


def verify(graph: Graph) -> Graph:
    """Check every rule of the IR; return the graph unchanged or raise `VerifyError`."""
    if not SYMBOL.match(graph.name):
        raise VerifyError(f"graph name {clip(graph.name)!r} is not an identifier")
    _check_names(graph)
    _check_references(graph)
    for node in graph.nodes:
        _check_node(graph, node)
    _check_outputs(graph)
    return graph


def _check_names(graph: Graph) -> None:
    seen: dict[str, Node] = {}
    external: dict[tuple[str, str], Node] = {}
    for node in graph.nodes:
        if node.op not in OPS:
            raise VerifyError(f"{where(node)}: unknown op '{node.op}'; known ops: {', '.join(sorted(OPS))}")
        if not isinstance(node.type, TensorType):
            raise VerifyError(f"{where(node)}: its type is a {type(node.type).__name__}, expected a TensorType")
        if not VALUE_NAME.match(node.name):
            raise VerifyError(f"{where(node)}: invalid value name %{clip(node.name)}")
        if node.name in seen:
            raise VerifyError(f"{where(node)}: duplicate name %{node.name}, already defined by {where(seen[node.name])}")
        seen[node.name] = node
        if OPS[node.op].is_interface and isinstance(node.attrs.get("name"), str):
            key = (node.op, node.attrs["name"])
            if key in external:
                raise VerifyError(
                    f"{where(node)}: duplicate {node.op} name {clip(key[1])!r}, already used by {where(external[key])}"
                )
            external[key] = node


def _check_references(graph: Graph) -> None:
    position = {n.name: i for i, n in enumerate(graph.nodes)}
    for node in graph.nodes:
        for operand in node.operands:
            if operand not in position:
                raise VerifyError(f"{where(node)}: dangling reference: operand %{operand} is not defined")
    try:
        cycle = nx.find_cycle(graph.nx)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        path = " -> ".join(f"%{u}" for u, _ in cycle) + f" -> %{cycle[0][0]}"
        raise VerifyError(f"{where(graph[cycle[0][0]])}: cycle in the graph: {path}")
    for i, node in enumerate(graph.nodes):
        for operand in node.operands:
            if position[operand] > i:
                raise VerifyError(
                    f"{where(node)}: forward reference: operand %{operand} is defined later, "
                    f"by {where(graph[operand])}; operands must be defined before their use"
                )


def _check_node(graph: Graph, node: Node) -> None:
    op = OPS[node.op]
    try:
        attrs = op.normalize_attrs(node.attrs)
        op.check_arity(len(node.operands))
    except OpTypeError as e:
        raise VerifyError(f"{where(node)}: {e}") from None
    if attrs != dict(node.attrs):
        raise VerifyError(f"{where(node)}: attributes are not in canonical form: {dict(node.attrs)}")
    if node.value is not None and node.op != "const":
        raise VerifyError(f"{where(node)}: only a const carries data")
    if op.is_source:
        _check_source(node)
        return
    types = [graph.type_of(o) for o in node.operands]
    try:
        inferred = op.result_type(types, attrs)
    except OpTypeError as e:
        raise VerifyError(f"{where(node)}: {e}") from None
    if inferred.dtype != node.type.dtype:
        raise VerifyError(f"{where(node)}: dtype mismatch: result declared {node.type}, the op gives {inferred}")
    if inferred != node.type:
        raise VerifyError(f"{where(node)}: result type mismatch: declared {node.type}, expected {inferred}")


def _check_source(node: Node) -> None:
    if node.operands:
        raise VerifyError(f"{where(node)}: takes no operands, got {len(node.operands)}")
    if node.type.dtype != "f32":
        raise VerifyError(f"{where(node)}: dtype mismatch: declared {node.type}, expected an f32 tensor")
    if "name" in node.attrs and not node.attrs["name"]:
        raise VerifyError(f"{where(node)}: empty {node.op} name")
    if node.op == "input" and not node.attrs["name"].isidentifier():
        raise VerifyError(f"{where(node)}: input name {clip(node.attrs['name'])!r} is not an identifier")
    if node.op == "const":
        v = node.value
        if not isinstance(v, np.ndarray):
            raise VerifyError(f"{where(node)}: a const needs its data (a numpy array)")
        if v.dtype != np.float32:
            raise VerifyError(f"{where(node)}: dtype mismatch: const data is {v.dtype}, expected float32")
        if tuple(v.shape) != node.type.shape:
            raise VerifyError(f"{where(node)}: const data has shape {list(v.shape)}, declared {node.type}")


def _check_outputs(graph: Graph) -> None:
    if not graph.outputs:
        raise VerifyError(f"graph @{graph.name} has no outputs")
    for name, value in graph.outputs.items():
        if not SYMBOL.match(name):
            raise VerifyError(f"output name {clip(name)!r} is not an identifier")
        if value not in graph:
            raise VerifyError(f"output '{name}' refers to %{value}, which is not defined")
