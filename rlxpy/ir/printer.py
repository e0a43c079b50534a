"""The printer: a graph as text, one line per node, that `parse_graph` reads back exactly.

    graph @block {
      %x = input {name = "x"} : tensor<2x8xf32>
      %c = const dense<[1.0, -2.5]> : tensor<2xf32>
      %w = const @w : tensor<8x16xf32> loc("fold-constants")
      %0 = matmul(%x, %w) : tensor<2x16xf32>
      output @y = %0
    }

Attributes appear in their declaration order and only when they differ from the default. A const
of up to `inline_limit` elements is printed inline as `dense<...>`; a larger one as a handle,
`const @NAME` (its node name). The data of handles travels beside the text (`consts="handles"`,
the default: `textio.save_graph` writes it to NAME.safetensors) or in the text itself, in a
resources section after the graph (`consts="resources"`), in the spirit of MLIR's
dialect_resources: each handle's raw little-endian float32 bytes, base64-encoded, one per line.

    resources {
      @w = "AACAPwAAAEAAAEBA..."
    }

The printer does not verify: passes' instruments print graphs that may be broken, so anything a
`Graph` can hold is printed as faithfully as the format allows.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np

from .graph import Graph, Node
from .ops import OPS, REQUIRED, Step

# Origins that need no loc(...): the node was written by hand (builder) or read from text (parser).
IMPLICIT_ORIGINS = ("builder", "parser")


CONSTS_MODES = ("handles", "resources")


def print_graph(graph: Graph, *, inline_limit: int = 8, consts: str = "handles") -> str:
    """The text of `graph`, ending with a newline. `consts="resources"` appends the data of every
    handle const in a resources section, so that the text alone parses back to the same graph."""
    if isinstance(inline_limit, bool) or not isinstance(inline_limit, int) or inline_limit < 0:
        raise ValueError(f"inline_limit must be a non-negative integer, got {inline_limit!r}")
    if consts not in CONSTS_MODES:
        raise ValueError(f"consts must be one of {', '.join(map(repr, CONSTS_MODES))}, got {consts!r}")
    lines = [f"graph @{graph.name} {{"]
    lines += [f"  {format_node(node, inline_limit)}" for node in graph.nodes]
    lines += [f"  output @{name} = %{value}" for name, value in graph.outputs.items()]
    lines.append("}")
    if consts == "resources":
        # a const without data (only in a broken graph) has nothing to write: it stays a bare handle
        entries = [f"  @{n.name} = \"{format_resource(n.value)}\"" for n in graph.nodes
                   if is_handle_const(n, inline_limit) and n.value is not None]
        if entries:
            lines += ["resources {", *entries, "}"]
    return "\n".join(lines) + "\n"


def format_resource(value: np.ndarray) -> str:
    """A const's data as its raw little-endian float32 bytes, base64-encoded."""
    return base64.b64encode(np.ascontiguousarray(value, dtype="<f4").tobytes()).decode("ascii")


def is_handle_const(node: Node, inline_limit: int = 8) -> bool:
    """Whether the printer writes this const as `const @NAME` instead of inline numbers."""
    return node.op == "const" and (node.value is None or np.size(node.value) > inline_limit)


def format_node(node: Node, inline_limit: int = 8) -> str:
    """`%name = op(%a, %b) {k = v} : type loc("pass")`, without indentation."""
    text = f"%{node.name} = {node.op}"
    if node.operands:
        text += "(" + ", ".join(f"%{o}" for o in node.operands) + ")"
    attrs = format_attrs(node)
    if attrs:
        text += " " + attrs
    if node.op == "const":
        if is_handle_const(node, inline_limit):
            text += f" @{node.name}"
        else:
            text += f" dense<{format_dense(node.value)}>"
    text += f" : {node.type}"
    if node.origin not in IMPLICIT_ORIGINS:
        text += f" loc({format_string(str(node.origin))})"
    return text


def format_attrs(node: Node) -> str:
    """`{k = v, ...}` with declared attributes first, in order, defaults left out; `` if none."""
    return _format_attr_dict(OPS.get(node.op), node.attrs, node)


def _format_attr_dict(opdef, attrs, node: Node | None) -> str:
    declared = opdef.attrs if opdef else {}
    keys = [k for k in declared if k in attrs] + [k for k in attrs if k not in declared]
    items = []
    for key in keys:
        value = attrs[key]
        spec = declared.get(key)
        if spec is not None and spec.default is not REQUIRED and _same(value, spec.default):
            continue
        items.append(f"{key} = {format_value(value, node, key)}")
    return "{" + ", ".join(items) + "}" if items else ""


def format_step(step: Step, node: Node | None = None) -> str:
    """An epilogue step: `scale {factor = 0.5}`, or just `relu` when every attribute is the default."""
    attrs = _format_attr_dict(OPS.get(step.op), step.attributes, node)
    return step.op + (f" {attrs}" if attrs else "")


def _same(value: Any, default: Any) -> bool:
    # `False == 0` and `1 == 1.0` in Python: a default is only omitted when the kinds agree too.
    return type(value) is type(default) and value == default


def format_value(value: Any, node: Node | None = None, key: str = "") -> str:
    """An attribute value: `3`, `0.5`, `1e-06`, `true`, `"text"`, `[0, 3, 1, 2]`, `[relu, scale {factor = 2.0}]`."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return format_float(float(value))
    if isinstance(value, str):
        return format_string(value)
    if isinstance(value, Step):
        return format_step(value, node)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v, node, key) for v in value) + "]"
    culprit = f"node %{node.name} ({node.op}): " if node is not None else ""
    raise TypeError(
        f"{culprit}attribute '{key}' holds a {type(value).__name__}, which the text form cannot express "
        "(expected an int, float, bool, string or list of them)"
    )


def format_float(x: float) -> str:
    """The shortest text that reads back as the same double, always with '.' or 'e' (or inf/nan)."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(x)  # Python's repr is the shortest round-tripping form and includes '.' or 'e'


def format_string(s: str) -> str:
    """A double-quoted string with JSON escapes (readable unicode, escaped controls and quotes)."""
    try:
        s.encode("utf-8")
        return json.dumps(s, ensure_ascii=False)
    except UnicodeEncodeError:  # lone surrogates cannot be written as UTF-8: escape everything
        return json.dumps(s, ensure_ascii=True)


def format_dense(value: Any) -> str:
    """A const's data nested like numpy: `1.5`, `[1.0, 2.0]`, `[[1.0], [2.0]]`.

    Each float32 is printed as the shortest decimal that reads back as the same float32.
    """
    array = np.asarray(value)
    if array.dtype.kind == "f":
        element = _float_element
    elif array.dtype.kind == "b":
        element = lambda v: "true" if v else "false"  # noqa: E731 (only in a broken graph)
    else:
        element = lambda v: str(v)  # noqa: E731 (ints; only in a broken graph)
    return _nest(array, element)


def _float_element(v: np.floating) -> str:
    if np.isnan(v):
        return "nan"
    if np.isinf(v):
        return "inf" if v > 0 else "-inf"
    return str(v)  # numpy's shortest unique repr for the scalar's own precision: '0.1', '1e-06'


def _nest(array: np.ndarray, element) -> str:
    if array.ndim == 0:
        return element(array[()])
    return "[" + ", ".join(_nest(sub, element) for sub in array) + "]"
