"""`rlxpy graph`: read a .rlx file, print it with a summary, or draw it with Graphviz.

    rlxpy graph IN.rlx                      # the graph's text, then a summary as // comments
    rlxpy graph IN.rlx --inline-limit 1000  # print consts of up to 1000 elements as numbers
    rlxpy graph IN.rlx --dot OUT.dot        # DOT file; OUT.svg too when Graphviz's dot is on PATH
    rlxpy graph IN.rlx --dot OUT.dot --format png
    rlxpy graph IN.rlx --dot -              # DOT on stdout

The DOT is made through networkx: one vertex per node (op, %name, attributes, type and, for
nodes made by a pass, the pass), one edge per operand labelled with its role, and one vertex per
output.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import networkx as nx

from ..errors import RlxError
from ..ir.graph import Graph, Node
from ..ir.ops import OPS
from ..ir.printer import IMPLICIT_ORIGINS, format_attrs, format_string, is_handle_const, print_graph
from ..ir.textio import load_graph

FORMATS = ("svg", "png")
SOURCE_FILL = {"input": "#dbeafe", "param": "#fef3c7", "const": "#e5e7eb"}
OUTPUT_FILL = "#dcfce7"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "graph", help="print a .rlx graph with a summary, or draw it as Graphviz DOT",
        description="Read a graph saved as NAME.rlx (with NAME.safetensors beside it when it has large "
                    "constants). Without --dot, print its text and a summary (node count per op) as // "
                    "comments, so the output still parses. With --dot, write the graph as Graphviz DOT "
                    "and, when Graphviz's dot program is on PATH, render it.",
    )
    p.add_argument("input", metavar="IN.rlx", help="the graph file")
    p.add_argument("--inline-limit", type=int, default=8, metavar="N",
                   help="print consts of up to N elements inline, larger ones as handles (default 8)")
    p.add_argument("--dot", metavar="OUT.dot", help="write Graphviz DOT here ('-' for stdout)")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="what dot renders beside OUT.dot: svg (default) or png")
    p.set_defaults(run=run)


def summary(graph: Graph, inline_limit: int = 8) -> list[str]:
    """Node count per op (in order of first use), outputs and constants, as // comment lines."""
    ops = Counter(n.op for n in graph.nodes)
    lines = [f"// @{graph.name}: {len(graph)} nodes ({', '.join(f'{n} {op}' for op, n in ops.items())})"]
    lines.append("// outputs: " + ", ".join(f"@{k} {t}" for k, t in graph.output_types.items()))
    consts = graph.of_op("const")
    if consts:
        handles = [n for n in consts if is_handle_const(n, inline_limit)]
        size = sum(n.type.nbytes for n in handles)
        lines.append(f"// consts: {len(consts) - len(handles)} inline, {len(handles)} by handle ({size} bytes)")
    return lines


def _label(lines: list[str]) -> str:
    """A quoted DOT string, one centred line per entry (our escaping; pydot keeps quoted strings)."""
    escaped = [line.replace("\\", "\\\\").replace('"', '\\"') for line in lines]
    return '"' + "\\n".join(escaped) + '"'


def _vertex(node: Node) -> dict[str, str]:
    lines = [node.op, f"%{node.name}"]
    attrs = format_attrs(node)
    if attrs:
        lines.append(attrs)
    lines.append(str(node.type))
    if node.origin not in IMPLICIT_ORIGINS:
        lines.append(f"loc({format_string(str(node.origin))})")
    style = {"label": _label(lines)}
    if node.op in SOURCE_FILL:
        style.update(style='"rounded,filled"', fillcolor=f'"{SOURCE_FILL[node.op]}"')
    return style


def _role(node: Node, i: int) -> str:
    """The operand's name in the op's declaration: a, b, bias, extra.0, ..."""
    opdef = OPS.get(node.op)
    if opdef is None:
        return str(i)
    fixed = opdef.fixed_operands
    if i < len(fixed):
        return fixed[i]
    return f"{opdef.operands[-1][1:]}.{i - len(fixed)}" if opdef.variadic else str(i)


def to_dot(graph: Graph) -> str:
    """The graph in Graphviz DOT: operand -> user edges, outputs as their own vertices."""
    g = nx.MultiDiGraph(name=graph.name)
    g.graph["graph"] = {"label": _label([f"@{graph.name}"]), "labelloc": "t"}
    g.graph["node"] = {"shape": "box", "fontname": "monospace", "fontsize": "10"}
    g.graph["edge"] = {"fontname": "monospace", "fontsize": "9"}
    ids = {node.name: f"n{i}" for i, node in enumerate(graph.nodes)}
    for node in graph.nodes:
        g.add_node(ids[node.name], **_vertex(node))
    for node in graph.nodes:
        for i, operand in enumerate(node.operands):
            if operand in ids:   # a dangling operand (broken graph) has no vertex to start from
                g.add_edge(ids[operand], ids[node.name], label=_label([_role(node, i)]))
    for i, (out, value) in enumerate(graph.outputs.items()):
        g.add_node(f"out{i}", label=_label([f"output @{out}"]), shape="oval",
                   style='"bold,filled"', fillcolor=f'"{OUTPUT_FILL}"')
        if value in ids:
            g.add_edge(ids[value], f"out{i}")
    return nx.nx_pydot.to_pydot(g).to_string()


def _write(path: Path, text: str) -> None:
    if not path.parent.is_dir():
        raise RlxError(f"cannot write {path}: directory {path.parent} does not exist")
    path.write_text(text, encoding="utf-8")


def rendered_path(dot_path: Path, fmt: str) -> Path:
    out = dot_path.with_suffix(f".{fmt}")
    if out == dot_path:
        raise RlxError(f"--dot {dot_path}: the rendered {fmt} would overwrite it; name the DOT file OUT.dot")
    return out


def render(dot_path: Path, out: Path, fmt: str) -> bool:
    """Run Graphviz's dot on `dot_path` to write `out`; False when dot is not on PATH."""
    exe = shutil.which("dot")
    if exe is None:
        return False
    try:
        done = subprocess.run([exe, f"-T{fmt}", str(dot_path), "-o", str(out)],
                              capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise RlxError(f"Graphviz dot took longer than 600 s to render {dot_path}") from None
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[0]
        raise RlxError(f"Graphviz dot failed to render {dot_path}: {detail}")
    return True


def run(args: argparse.Namespace) -> int:
    if args.format and not args.dot:
        raise RlxError("--format chooses what --dot renders; give --dot OUT.dot too")
    if args.inline_limit < 0:
        raise RlxError(f"--inline-limit {args.inline_limit}: expected a number of elements >= 0")
    graph = load_graph(args.input)
    if not args.dot:
        print(print_graph(graph, inline_limit=args.inline_limit), end="")
        print("\n".join(summary(graph, args.inline_limit)))
        return 0
    dot = to_dot(graph)
    if args.dot == "-":
        if args.format:
            raise RlxError("--format cannot render DOT written to stdout; give --dot OUT.dot")
        print(dot, end="")
        return 0
    dot_path = Path(args.dot)
    fmt = args.format or "svg"
    out = rendered_path(dot_path, fmt)
    _write(dot_path, dot)
    print("\n".join(summary(graph, args.inline_limit)))
    print(f"wrote {dot_path}")
    if render(dot_path, out, fmt):
        print(f"wrote {out}")
    else:
        print(f"Graphviz's dot is not on PATH: wrote only {dot_path} (install Graphviz to render {fmt})")
    return 0
