"""Nodes and graphs: a typed SSA graph.

Every node defines exactly one value, named by the node (`%name` in the text form), and refers to
its operands by their names. Nodes are kept in definition order: an operand must be defined before
its use. Nodes are immutable; passes make new graphs. A graph also names its outputs.

Structure questions (users, reachability, cycles, order) go through `Graph.nx`, a networkx
DiGraph with an edge from each operand to each node that uses it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Iterable, Mapping

import networkx as nx
import numpy as np

from .types import TensorType


@dataclass(frozen=True, eq=False)
class Node:
    name: str                      # the SSA value this node defines
    op: str
    operands: tuple[str, ...]
    attrs: Mapping[str, Any]       # canonical: every attribute present, lists as tuples
    type: TensorType
    value: np.ndarray | None = field(default=None, repr=False)  # a const's data (read-only)
    origin: str = "builder"        # provenance: which pass (or builder, parser) created the node
    loc: tuple[int, int] | None = None  # (line, column) in the text it was parsed from

    def with_(self, **changes: Any) -> "Node":
        return replace(self, **changes)

    @cached_property
    def fingerprint(self) -> str | None:
        """A cheap summary of a const's data: a hash of at most 4096 evenly spaced elements.
        Equal data give equal fingerprints; equal fingerprints still need a full comparison."""
        if self.value is None:
            return None
        flat = self.value.reshape(-1)
        sample = flat[:: max(1, flat.size // 4096)]
        return hashlib.sha256(np.ascontiguousarray(sample).tobytes()).hexdigest()

    def key(self) -> tuple:
        """Equal for nodes that compute the same value: op, operands, attrs, type, data fingerprint
        (so for consts, compare the data too before merging)."""
        return (self.op, self.operands, tuple(sorted(self.attrs.items())), self.type, self.fingerprint)


class Graph:
    """An ordered list of nodes plus named outputs. Built by `GraphBuilder`, the parser or a pass."""

    def __init__(self, name: str, nodes: Iterable[Node], outputs: Mapping[str, str]):
        self.name = name
        self.nodes: tuple[Node, ...] = tuple(nodes)
        self.outputs: dict[str, str] = dict(outputs)
        self._by_name: dict[str, Node] = {}
        for n in self.nodes:
            self._by_name.setdefault(n.name, n)

    def __repr__(self) -> str:
        return f"<Graph @{self.name}: {len(self.nodes)} nodes, outputs {list(self.outputs)}>"

    def __str__(self) -> str:
        """The graph's text, as `print_graph` writes it (large constants by handle), so that
        `print(graph)` shows the IR."""
        from .printer import print_graph   # the printer imports this module
        return print_graph(self)

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self):
        return iter(self.nodes)

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> Node:
        return self._by_name[name]

    def type_of(self, name: str) -> TensorType:
        return self._by_name[name].type

    def of_op(self, op: str) -> list[Node]:
        return [n for n in self.nodes if n.op == op]

    @property
    def inputs(self) -> list[Node]:
        return self.of_op("input")

    @property
    def params(self) -> list[Node]:
        return self.of_op("param")

    @property
    def input_types(self) -> dict[str, TensorType]:
        """Run-time inputs by the name the caller passes them with."""
        return {n.attrs["name"]: n.type for n in self.inputs}

    @property
    def param_types(self) -> dict[str, TensorType]:
        return {n.attrs["name"]: n.type for n in self.params}

    @property
    def output_types(self) -> dict[str, TensorType]:
        return {k: self._by_name[v].type for k, v in self.outputs.items()}

    @cached_property
    def nx(self) -> nx.DiGraph:
        """Operand -> user edges; dangling operands appear as nodes without a `node` attribute."""
        g = nx.DiGraph()
        for n in self.nodes:
            g.add_node(n.name, node=n)
        for n in self.nodes:
            for i, operand in enumerate(n.operands):
                g.add_edge(operand, n.name)
        return g

    def users(self, name: str) -> list[Node]:
        return [self._by_name[u] for u in self.nx.successors(name)]

    def is_output(self, name: str) -> bool:
        return name in self.outputs.values()

    def live(self) -> set[str]:
        """Names of the values the outputs depend on (the outputs included)."""
        seen: set[str] = set()
        for v in set(self.outputs.values()):
            if v in self.nx:
                seen.add(v)
                seen |= nx.ancestors(self.nx, v)
        return seen

    def with_nodes(self, nodes: Iterable[Node], outputs: Mapping[str, str] | None = None) -> "Graph":
        return Graph(self.name, nodes, self.outputs if outputs is None else outputs)

    def fresh_name(self, stem: str = "") -> str:
        """A value name not used in this graph."""
        i = len(self.nodes)
        while f"{stem}{i}" in self._by_name:
            i += 1
        return f"{stem}{i}"
