"""Graphs on disk: `NAME.rlx` (the text) plus, for large constants, `NAME.safetensors` beside it.

    save_graph(graph, "out/neck.rlx")      # writes out/neck.rlx (+ out/neck.safetensors)
    graph = load_graph("out/neck.rlx")     # reads the pair back, verified
    save_graph(graph, "one.rlx", consts="resources")   # one self-contained file, no safetensors

A const with more than `inline_limit` elements is printed as a handle, `const @NAME`, and its data
is stored in the safetensors file under the same NAME (or, with `consts="resources"`, base64 in
the text's resources section). The pair is kept consistent: saving a graph without handle
constants in the sidecar removes a stale `NAME.safetensors`, and loading rejects a safetensors file
holding a tensor that the text does not use, or one that the resources section holds too.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from ..errors import RlxError
from .graph import Graph
from .parser import _parse
from .printer import is_handle_const, print_graph

SUFFIX = ".rlx"
CONSTS_SUFFIX = ".safetensors"


def consts_path(path: str | os.PathLike) -> Path:
    """Where the constants of the graph at `path` live: the same name with `.safetensors`."""
    return Path(path).with_suffix(CONSTS_SUFFIX)


def save_graph(graph: Graph, path: str | os.PathLike, *, inline_limit: int = 8, header: str = "",
               consts: str = "handles") -> list[Path]:
    """Write `graph` to `path` (which must end in .rlx) and its large constants beside it
    (`consts="handles"`) or in the text's resources section (`consts="resources"`).

    `header` goes first, each line as a `//` comment. Returns the files written. The graph is not
    verified, so a broken graph can be saved for a bug report; every const must carry its data.
    """
    path = Path(path)
    if path.suffix != SUFFIX:
        raise RlxError(f"cannot save a graph to {path}: the file name must end in {SUFFIX}")
    if not path.parent.is_dir():
        raise RlxError(f"cannot write {path}: directory {path.parent} does not exist")
    tensors: dict[str, np.ndarray] = {}
    for node in graph.nodes:
        if not is_handle_const(node, inline_limit):
            continue
        if node.value is None:
            raise RlxError(f"cannot save graph @{graph.name}: const %{node.name} has no data")
        if node.name in tensors:
            raise RlxError(f"cannot save graph @{graph.name}: two consts are named %{node.name}")
        tensors[node.name] = np.ascontiguousarray(node.value)
    text = print_graph(graph, inline_limit=inline_limit, consts=consts)
    if header:
        text = "".join(line if line.startswith("//") else f"// {line}" for line in header.splitlines(True)) + "\n" + text
    if consts == "resources":
        tensors = {}      # the text holds them
    written = []
    side = consts_path(path)
    if tensors:
        save_file(tensors, str(side), metadata={"format": "rlxpy-consts", "graph": graph.name})
        written.append(side)
    elif side.exists():   # a stale file from an earlier save would not match the new text
        side.unlink()
    path.write_text(text, encoding="utf-8")
    written.insert(0, path)
    return written


def load_graph(path: str | os.PathLike) -> Graph:
    """Read the graph saved at `path` and, if it exists, the `.safetensors` file beside it."""
    path = Path(path)
    if not path.is_file():
        raise RlxError(f"graph file {path}: not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise RlxError(f"graph file {path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    side = consts_path(path)
    consts = None
    if side.is_file():
        try:
            consts = load_file(str(side))
        except (SafetensorError, OSError, ValueError, TypeError) as e:
            raise RlxError(f"constants file {side}: not a readable safetensors file ({e})") from None
        consts_from = str(side)
    else:
        consts_from = f"{side} does not exist (the large constants of {path.name} are saved there)"
    return _parse(text, str(path), consts, consts_from)
