"""Graphs on disk: `NAME.rlx` (the text) plus, for large constants, `NAME.safetensors` beside it.

    save_graph(graph, "out/neck.rlx")      # writes out/neck.rlx (+ out/neck.safetensors)
    graph = load_graph("out/neck.rlx")     # reads the pair back, verified
    save_graph(graph, "one.rlx", consts="resources")   # one self-contained file, no safetensors

A const with more than `inline_limit` elements is printed as a handle, `const @NAME`, and its data
is stored in the safetensors file under the same NAME (or, with `consts="resources"`, base64 in
the text's resources section). The pair is kept consistent: saving a graph without handle
constants in the sidecar removes a stale `NAME.safetensors`, and loading rejects a safetensors file
holding a tensor that the text does not use, or one that the resources section holds too.

A dump written with `dump_constants="small"` (see `rlxpy.passes.DumpDir`) leaves out constants an
earlier dump of the same run already holds, and names them in its header:

    // rlxpy-consts-in: 001-fold-constants.safetensors {"pos0": "pos0", "w": "lateral0_w"}

(handle here -> tensor in that file, beside this one); `load_graph` reads them from there. A dump
written with `dump_constants="none"` says `// rlxpy-consts: none written ...`, and loading it names
that as the reason its constants are missing.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Collection

import numpy as np
from safetensors import SafetensorError
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from ..errors import RlxError
from ..files import regular_file
from .graph import Graph
from .parser import _parse
from .printer import is_handle_const, print_graph

SUFFIX = ".rlx"
CONSTS_SUFFIX = ".safetensors"
# Header lines of pass dumps (see the module docstring): where left-out constants are, or that none are.
CONSTS_IN = "// rlxpy-consts-in: "
CONSTS_NONE = "// rlxpy-consts: none written"
_CONSTS_IN_LINE = re.compile(r"(\S+) (\{.*\})")


def consts_path(path: str | os.PathLike) -> Path:
    """Where the constants of the graph at `path` live: the same name with `.safetensors`."""
    return Path(path).with_suffix(CONSTS_SUFFIX)


def save_graph(graph: Graph, path: str | os.PathLike, *, inline_limit: int = 8, header: str = "",
               consts: str = "handles", omit_consts: Collection[str] = ()) -> list[Path]:
    """Write `graph` to `path` (which must end in .rlx) and its large constants beside it
    (`consts="handles"`) or in the text's resources section (`consts="resources"`).

    `header` goes first, each line as a `//` comment. Returns the files written. The graph is not
    verified, so a broken graph can be saved for a bug report; every const must carry its data,
    except the handle consts named in `omit_consts`, whose data is not written (the header should
    say where it is).
    """
    path = Path(path)
    if path.suffix != SUFFIX:
        raise RlxError(f"cannot save a graph to {path}: the file name must end in {SUFFIX}")
    if not path.parent.is_dir():
        raise RlxError(f"cannot write {path}: directory {path.parent} does not exist")
    tensors: dict[str, np.ndarray] = {}
    for node in graph.nodes:
        if not is_handle_const(node, inline_limit) or node.name in omit_consts:
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
    path = regular_file(path, "graph")            # a directory, FIFO or device is named, never read
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
    header = _header(text)
    if any(line.startswith(CONSTS_NONE) for line in header):
        consts_from = f"{path.name} was dumped without constant data (dump_constants='none')"
    elsewhere = _consts_elsewhere(path, header)
    if elsewhere:
        consts = {**(consts or {}), **elsewhere}
        own = side.name if side.is_file() else f"{side.name} (which does not exist)"
        consts_from = f"{own} or the earlier dumps named in the header of {path.name}"
    return _parse(text, str(path), consts, consts_from)


def _header(text: str) -> list[str]:
    """The comment lines before the graph."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("//"):
            break
        lines.append(line)
    return lines


def _consts_elsewhere(path: Path, header: list[str]) -> dict[str, np.ndarray]:
    """The constants a dump's header says are in earlier dumps' files beside it."""
    found: dict[str, np.ndarray] = {}
    for number, line in enumerate(header, start=1):
        if not line.startswith(CONSTS_IN):
            continue
        m = _CONSTS_IN_LINE.fullmatch(line[len(CONSTS_IN):])
        where = f"graph file {path}:{number}"
        try:
            names = json.loads(m.group(2)) if m else None
        except json.JSONDecodeError:
            names = None
        if not isinstance(names, dict) or not all(isinstance(v, str) for v in names.values()):
            raise RlxError(f"{where}: expected '{CONSTS_IN}FILE.safetensors {{\"handle\": \"key\", ...}}'")
        name = m.group(1)
        if Path(name).name != name or not name.endswith(CONSTS_SUFFIX):
            raise RlxError(f"{where}: {name!r} is not a .safetensors file name beside {path.name}")
        other = path.parent / name
        if not other.is_file():
            first = next(iter(names))
            raise RlxError(f"{where}: the data of constant @{first} is in {other} (written by an earlier dump of "
                           f"the same run), which does not exist")
        try:
            with safe_open(str(other), framework="numpy") as f:
                keys = set(f.keys())
                for handle, key in names.items():
                    if key not in keys:
                        raise RlxError(f"{where}: constant @{handle} should be '{key}' in {other}, which has no such tensor")
                    found[handle] = f.get_tensor(key)
        except (SafetensorError, OSError) as e:
            raise RlxError(f"{where}: {other} (named for constants) is not a readable safetensors file ({e})") from None
    return found
