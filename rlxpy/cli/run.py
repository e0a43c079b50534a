"""`rlxpy run`: compile any saved graph and run it on inputs from a file (or seeded random ones).

    rlxpy run block.rlx --inputs in.npz --params w.safetensors --target llvm --out out.npz

The graph is read by the reader registered for its file suffix in `READERS` (today `.rlx`, the
textual IR with its `.safetensors` of constants beside it); a frontend for another format (ONNX)
adds its suffix there and everything after reading is shared. The checks are those of the Python
API (`rlxpy.compile`, the executable's input checks), each reported as one line that names the
input or param and the file.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np

from .. import driver
from ..errors import RlxError
from ..files import regular_file
from ..ir.graph import Graph
from ..ir.textio import load_graph
from ..params import load_params
from .common import (add_dump_constants_option, add_llvm_options, add_plugin_option, check_output_paths, checked_inputs,
                     dump_constants, load_npz, load_plugins, print_comparison, print_outputs, save_npz, seed,
                     target_options)
from .progress import Stages, add_progress_option

# What `rlxpy run` reads, by file suffix: (what the format is, a reader returning a verified Graph).
READERS: dict[str, tuple[str, Callable[[Path], Graph]]] = {
    ".rlx": ("rlxpy textual IR, large constants in NAME.safetensors beside it", load_graph),
}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "run", help="compile a saved graph and run it on inputs from a file",
        description="Compile a graph saved as textual IR (.rlx) and run it, printing where each node ran "
                    "and a checksum of every output. Without --inputs it runs on seeded random inputs "
                    "(never zero). Params the graph leaves unbound come from --params.",
    )
    p.add_argument("graph", metavar="GRAPH", help="the graph: " + "; ".join(f"{s} ({what})" for s, (what, _) in READERS.items()))
    p.add_argument("--inputs", metavar="IN.npz", help="the inputs by name (float arrays of the declared shapes)")
    p.add_argument("--params", metavar="W.safetensors", help="the graph's params, keyed by param name")
    p.add_argument("--seed", type=seed, default=0, help="seed of the random inputs when there is no --inputs (default 0)")
    p.add_argument("--out", metavar="OUT.npz", help="write the outputs here, by output name")
    p.add_argument("--target", default="interp", choices=list(driver.TARGETS))
    p.add_argument("--pipeline", default="default", help="pass pipeline (see 'rlxpy opt --list-passes')")
    add_plugin_option(p)
    p.add_argument("--dump-dir", metavar="DIR", help="write the IR before and after every pass (and, for llvm, the module's .ll, .opt.ll and .s)")
    add_dump_constants_option(p)
    p.add_argument("--report", action="store_true", help="print the fusion report in full")
    add_progress_option(p)
    add_llvm_options(p)
    p.set_defaults(run=run)


def read_graph(path: str) -> Graph:
    """The graph in `path`, read by the reader of its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in READERS:
        known = ", ".join(f"{s} ({what})" for s, (what, _) in READERS.items())
        raise RlxError(f"graph file {path}: unknown format '{suffix or '(no suffix)'}'; rlxpy run reads {known}")
    return READERS[suffix][1](regular_file(path, "graph"))       # a FIFO or device is never opened


def random_inputs(graph: Graph, seed: int) -> dict[str, np.ndarray]:
    """Seeded random inputs bounded away from zero (zeros hide layout bugs), one seed per input."""
    from ..difftest.generate import nonzero_data
    return {name: nonzero_data(t.shape, seed + i) for i, (name, t) in enumerate(graph.input_types.items())}


def _inputs(args, graph: Graph) -> tuple[dict[str, np.ndarray], str]:
    if args.inputs is None:
        return random_inputs(graph, args.seed), f"random (seed {args.seed}; uniform in ±[0.25, 1], never zero)"
    return checked_inputs(graph.input_types, load_npz(args.inputs), args.inputs), args.inputs


def _params(args, graph: Graph) -> tuple[dict[str, np.ndarray], str]:
    if args.params is not None:
        return load_params(args.params, graph), args.params
    if graph.params:
        names = ", ".join(f"'{k}'" for k in list(graph.param_types)[:3]) + (", ..." if len(graph.params) > 3 else "")
        raise RlxError(f"graph @{graph.name} in {args.graph} has {len(graph.params)} unbound param(s) ({names}): "
                       f"give their values with --params W.safetensors, keyed by param name")
    return {}, "none (the graph has no params)"


def _counts(graph: Graph) -> str:
    return ", ".join(f"{n} {op}" for op, n in Counter(n.op for n in graph.nodes).items())


def run(args: argparse.Namespace) -> int:
    options = target_options(args)                     # bad options and paths are reported before any work
    dumps = dump_constants(args)
    check_output_paths(args)
    load_plugins(args)
    stage = Stages(args, "rlxpy run")                # each stage on stderr as it ends, with --progress
    with stage("load"):
        graph = read_graph(args.graph)
    with stage("data"):
        params, params_from = _params(args, graph)
        if args.inputs is not None:                 # a file's inputs are checked before compiling
            inputs, inputs_from = _inputs(args, graph)
    with stage("compile"):
        exe = driver.compile(graph, params=params, target=args.target, pipeline=args.pipeline,
                             dump_dir=args.dump_dir, dump_constants=dumps, **options)
    if args.inputs is None:                         # after compile, which refuses a graph too large to fit
        inputs, inputs_from = _inputs(args, graph)
    with stage("run"):
        out = exe(**inputs)

    print(f"rlxpy run: @{graph.name} from {args.graph}: {len(graph)} nodes ({_counts(graph)})")
    print(f"  params   {params_from}" + (f": {len(params)} tensor(s)" if params else ""))
    print(f"  inputs   {inputs_from}: " + ("  ".join(f"{k} {list(v.shape)}" for k, v in inputs.items()) or "none"))
    print(f"  passes   '{exe.pipeline}' -> {len(exe.graph)} nodes ({_counts(exe.graph)})")
    report = exe.fusion_report().splitlines()
    print(f"  fusion   {report[0]}")
    for line in report[1:] if args.report else [line for line in report[1:] if "missed" in line]:
        print(f"         {line}")
    print("  " + exe.report().replace("\n", "\n  "))
    print("stages")
    for name, seconds in stage.times.items():
        print(f"  {name:<9}{seconds * 1e3:9.1f} ms")
    print_outputs(out)
    if args.compare:
        print_comparison(graph, params, inputs, out)
    if args.out:
        save_npz(args.out, out)
        print(f"wrote {args.out}")
    return 0
