"""`rlxpy opt`: run a pass pipeline over a .rlx file, like mlir-opt or xdsl-opt."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from ..errors import RlxError
from ..ir.parser import parse_graph
from ..ir.printer import print_graph
from ..ir.textio import load_graph, save_graph
from ..passes import PASSES, PIPELINES, PassManager


def add_parser(sub) -> None:
    p = sub.add_parser(
        "opt", help="run a pass pipeline over a .rlx file",
        description="Run a pass pipeline over a graph in textual IR and print or save the result. "
                    "Instrument output (IR dumps, timing, bisection) goes to stderr.",
    )
    p.add_argument("input", nargs="?", metavar="IN.rlx", help="graph to optimise ('-' reads stdin)")
    p.add_argument("-p", "--pass-pipeline", dest="pipeline", default="default",
                   help="e.g. 'fold-constants,fuse-epilogue{skip=upsample_add},cse,dce' (default: default)")
    p.add_argument("-o", "--output", metavar="OUT.rlx", help="save the result (and its constants) here instead of printing it")
    p.add_argument("--print-ir-after-all", action="store_true", help="print the IR after every pass")
    p.add_argument("--print-ir-before", metavar="P[,P...]", help="print the IR before these passes")
    p.add_argument("--print-ir-after", metavar="P[,P...]", help="print the IR after these passes")
    p.add_argument("--print-ir-after-change", action="store_true",
                   help="print the IR after a pass only if it changed it (alone: after every such pass)")
    p.add_argument("--time-passes", action="store_true", help="report the wall time of each pass")
    p.add_argument("--dump-dir", metavar="DIR", help="write 000-input.rlx, 001-<pass>.rlx, ... into DIR")
    p.add_argument("--opt-bisect-limit", type=int, metavar="N", help="run only the first N pass applications")
    p.add_argument("--no-verify-each", dest="verify_each", action="store_false", help="do not verify after every pass")
    p.add_argument("--reproducer-dir", metavar="DIR", help="where a failing pass leaves its reproducer (default: a temp dir)")
    p.add_argument("--report", action="store_true", help="print every pass remark (the fusion report among them)")
    p.add_argument("--list-passes", action="store_true", help="list the passes, their options and the named pipelines")
    p.set_defaults(run=run)


def list_passes() -> str:
    lines = ["passes:"]
    for name in sorted(PASSES):
        cls = PASSES[name]
        lines.append(f"  {name:<16}{cls.summary}")
        for f in dataclasses.fields(cls):
            lines.append(f"  {'':<18}{f.name.replace('_', '-')}: {f.type} = {str(f.default).lower() if isinstance(f.default, bool) else f.default}")
    lines.append("pipelines:")
    for name, text in PIPELINES.items():
        lines.append(f"  {name:<16}{text or '(no passes)'}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.list_passes:
        print(list_passes())
        return 0
    if not args.input:
        raise RlxError("missing IN.rlx (or --list-passes)")
    if args.opt_bisect_limit is not None and args.opt_bisect_limit < 0:
        raise RlxError(f"--opt-bisect-limit must be >= 0, got {args.opt_bisect_limit}")
    graph = parse_graph(sys.stdin.read(), source="<stdin>") if args.input == "-" else load_graph(args.input)
    pm = PassManager(
        args.pipeline, verify_each=args.verify_each, print_ir_before=args.print_ir_before,
        print_ir_after=args.print_ir_after, print_ir_after_all=args.print_ir_after_all,
        print_ir_after_change=args.print_ir_after_change, time_passes=args.time_passes,
        dump_dir=args.dump_dir, opt_bisect_limit=args.opt_bisect_limit,
        reproducer_dir=args.reproducer_dir,
    )
    result = pm.run(graph)
    if args.report:
        for remark in pm.log.remarks:
            print(remark, file=sys.stderr)
    if args.output:
        save_graph(result, args.output)
    else:
        sys.stdout.write(print_graph(result) + "\n")
    return 0
