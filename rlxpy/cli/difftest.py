"""`rlxpy difftest`, `bisect`, `reduce` and `replay`: find a miscompile, name the pass or kernel at
fault, and shrink the case, as llvm-reduce, opt-bisect and C-Reduce do for LLVM."""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..difftest.bisect import bisect_case
from ..difftest.check import check_case
from ..difftest.generate import nonzero_data, seeded_case
from ..difftest.reduce import reduce_case
from ..difftest.reproducer import Reproducer, load_reproducer, write_reproducer
from ..errors import RlxError
from ..files import check_creatable_dir, check_writable, load_npz, save_npz
from ..ir.graph import Graph
from ..ir.textio import load_graph, save_graph
from ..params import bind_params
from ..passes import PassManager
from . import progress
from .common import add_plugin_option, checked_inputs, load_plugins, seed

TARGETS = ("interp", "llvm")


def add_parser(sub) -> None:
    p = sub.add_parser("difftest", help="check random graphs: interpreter vs every pass vs native code",
                       description="Generate random graphs, check each (the interpreter on the unoptimised "
                                   "graph is the oracle), and on a mismatch write a reproducer folder, reduce "
                                   "it and exit with status 1.")
    p.add_argument("--count", type=int, default=100, help="number of graphs (default 100)")
    p.add_argument("--seed", type=seed, default=0, help="graph i uses seed S + i (default 0)")
    _check_options(p)
    p.add_argument("--max-nodes", type=int, default=12, help="nodes per graph, about (default 12)")
    p.add_argument("--out", default="difftest-failures", metavar="DIR", help="where reproducers go (default ./difftest-failures)")
    p.add_argument("--no-reduce", dest="reduce", action="store_false", help="do not reduce the first failure")
    progress.add_progress_option(p)
    p.set_defaults(run=run_difftest)

    p = sub.add_parser("bisect", help="name the first pass application that changes a case's result")
    _case_options(p)
    p.set_defaults(run=run_bisect)

    p = sub.add_parser("reduce", help="shrink a failing case while the same mismatch persists")
    _case_options(p)
    p.add_argument("-o", "--output", required=True, metavar="SMALL.rlx", help="the reduced graph (inputs go to SMALL.inputs.npz)")
    progress.add_progress_option(p)
    p.set_defaults(run=run_reduce)

    p = sub.add_parser("replay", help="re-run a reproducer folder written by difftest",
                       description="Re-run a reproducer folder written by difftest, loading the pass plugins it "
                                   "records (case.json) before any given with --load-pass-plugin.")
    p.add_argument("directory", metavar="DIR")
    add_plugin_option(p)
    p.set_defaults(run=run_replay)


def _check_options(p) -> None:
    p.add_argument("--pipeline", default="default", help="pass pipeline to check (default: default)")
    p.add_argument("--target", default="llvm", choices=TARGETS, help="also check native code (llvm, the default) or only the passes (interp)")
    add_plugin_option(p)


def _case_options(p) -> None:
    p.add_argument("case", metavar="CASE.rlx")
    p.add_argument("--inputs", metavar="IN.npz", help="inputs (default: inputs.npz beside CASE.rlx, else random)")
    p.add_argument("--seed", type=seed, default=0, help="seed of random inputs when there are none")
    _check_options(p)


def _load_case(args) -> tuple[Graph, dict[str, np.ndarray]]:
    load_plugins(args)
    graph = load_graph(args.case)
    if graph.params:
        raise RlxError(f"{args.case}: params {sorted(graph.param_types)} are unbound; a case holds its weights as consts")
    path = args.inputs or (Path(args.case).parent / "inputs.npz")
    if args.inputs or Path(path).is_file():
        inputs = checked_inputs(graph.input_types, load_npz(str(path)), path)
    else:
        inputs = {k: nonzero_data(t.shape, args.seed + i) for i, (k, t) in enumerate(graph.input_types.items())}
    PassManager(args.pipeline)                       # a bad pipeline is reported before any work
    return graph, inputs


def run_difftest(args: argparse.Namespace) -> int:
    if args.count < 1 or args.max_nodes < 1:
        raise RlxError("--count and --max-nodes must be >= 1")
    load_plugins(args)
    PassManager(args.pipeline)
    check_creatable_dir(args.out, "--out")
    start = time.perf_counter()
    nodes, failures = 0, []
    with progress.bar(args, total=args.count, desc="difftest", unit="graph") as bar:
        bar.set_postfix_str("0 mismatches", refresh=False)
        for i in range(args.count):
            seed = args.seed + i
            case = seeded_case(seed, args.max_nodes)
            graph = bind_params(case.graph, case.params)
            nodes += len(graph)
            result = check_case(graph, case.inputs, pipeline=args.pipeline, target=args.target)
            if not result.ok:
                folder = Path(args.out) / f"seed-{seed}"
                write_reproducer(folder, Reproducer(graph, case.inputs, args.pipeline, args.target, seed, str(result.first)))
                failures.append((folder, graph, case.inputs))
                bar.write(f"mismatch: seed {seed}: {result.first}\n  reproducer: {folder}", file=sys.stdout)
                bar.set_postfix_str(f"{len(failures)} mismatches", refresh=False)
            bar.update()
    seconds = time.perf_counter() - start
    print(f"difftest: {args.count} graphs, {nodes} nodes, {len(failures)} mismatches, {seconds:.1f} s "
          f"(pipeline '{args.pipeline}', target {args.target}, seeds {args.seed}..{args.seed + args.count - 1})")
    if not failures:
        return 0
    if args.reduce:
        folder, graph, inputs = failures[0]
        with _reduce_progress(args) as (_, tick):
            reduced = reduce_case(graph, inputs, pipeline=args.pipeline, target=args.target, on_try=tick)
        save_graph(reduced.graph, folder / "reduced.rlx")
        save_npz(str(folder / "reduced.inputs.npz"), reduced.inputs)
        print(f"reduced {folder.name}: {len(graph)} -> {len(reduced.graph)} nodes ({folder / 'reduced.rlx'}): {reduced.mismatch}")
        verdict = bisect_case(reduced.graph, reduced.inputs, pipeline=args.pipeline, target=args.target)
        print(f"bisect: {verdict}")
    return 1


@contextmanager
def _reduce_progress(args):
    """A bar of the transformations tried, showing the size of the smallest case so far."""
    with progress.bar(args, desc="reduce", unit="try") as bar:
        def tick(tries: int, graph: Graph) -> None:
            if not bar.disable:
                bar.set_postfix_str(f"{len(graph)} nodes, {sum(n.type.numel for n in graph.nodes)} elements", refresh=False)
                bar.update(tries - bar.n)
        yield bar, tick


def run_bisect(args: argparse.Namespace) -> int:
    graph, inputs = _load_case(args)
    result = bisect_case(graph, inputs, pipeline=args.pipeline, target=args.target, log=print)
    print(result)
    return 0


def run_reduce(args: argparse.Namespace) -> int:
    check_writable(args.output, "-o", suffix=".rlx")
    check_writable(Path(args.output).with_suffix(".inputs.npz"), "-o")
    graph, inputs = _load_case(args)
    with _reduce_progress(args) as (bar, tick):
        reduced = reduce_case(graph, inputs, pipeline=args.pipeline, target=args.target,
                              log=lambda line: bar.write(line, file=sys.stderr), on_try=tick)
    out = Path(args.output)
    save_graph(reduced.graph, out)
    inputs_path = out.with_suffix(".inputs.npz")
    save_npz(str(inputs_path), reduced.inputs)
    print(f"reduced {len(graph)} -> {len(reduced.graph)} nodes in {reduced.steps} steps ({reduced.tries} tried): "
          f"{reduced.mismatch}\nwrote {out} and {inputs_path}")
    return 0


def run_replay(args: argparse.Namespace) -> int:
    case = load_reproducer(args.directory)               # loads the plugins it records
    load_plugins(args)
    case.inputs = checked_inputs(case.graph.input_types, case.inputs, Path(args.directory) / "inputs.npz")
    result = check_case(case.graph, case.inputs, pipeline=case.pipeline, target=case.target)
    if result.ok:
        print(f"replay: {args.directory}: no mismatch any more (pipeline '{case.pipeline}', target {case.target})")
        return 0
    print(f"replay: {args.directory}: {result.first}")
    return 1
