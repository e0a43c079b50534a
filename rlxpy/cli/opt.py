"""`rlxpy opt`: run a pass pipeline over a .rlx file, like mlir-opt or xdsl-opt.

The result goes to stdout, or with `-o OUT.rlx` to a file (large constants in OUT.safetensors).
On stdout, large constants are written in the text's resources section whenever stdout is not a
terminal, so `rlxpy opt a.rlx | rlxpy opt -` and `rlxpy opt a.rlx > b.rlx` give text that parses
back on its own; on a terminal they are shown by handle only (megabytes of base64 help no reader),
and a note on stderr says how to keep them.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from ..errors import RlxError
from ..ir.parser import parse_graph
from ..ir.printer import is_handle_const, print_graph
from ..ir.textio import load_graph, save_graph
from ..passes import PASSES, PIPELINES, PassManager, option_range
from ..passes.plugins import plugin_of
from .common import add_dump_constants_option, add_plugin_option, dump_constants, load_plugins


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
    p.add_argument("--consts", choices=CONSTS, default="auto",
                   help="where the data of large constants goes: 'resources' in the text (base64, after the "
                        "graph), 'handles' by name only (with -o: in OUT.safetensors); 'auto' (default): "
                        "resources on stdout unless it is a terminal, handles with -o")
    p.add_argument("--print-ir-after-all", action="store_true", help="print the IR after every pass")
    p.add_argument("--print-ir-before", metavar="P[,P...]", help="print the IR before these passes")
    p.add_argument("--print-ir-after", metavar="P[,P...]", help="print the IR after these passes")
    p.add_argument("--print-ir-after-change", action="store_true",
                   help="print the IR after a pass only if it changed it (alone: after every such pass)")
    p.add_argument("--time-passes", action="store_true", help="report the wall time of each pass")
    p.add_argument("--dump-dir", metavar="DIR", help="write 000-input.rlx, 001-<pass>.rlx, ... into DIR")
    add_dump_constants_option(p)
    p.add_argument("--opt-bisect-limit", type=int, metavar="N", help="run only the first N pass applications")
    p.add_argument("--no-verify-each", dest="verify_each", action="store_false", help="do not verify after every pass")
    p.add_argument("--reproducer-dir", metavar="DIR", help="where a failing pass leaves its reproducer (default: a temp dir)")
    p.add_argument("--report", action="store_true", help="print every pass remark (the fusion report among them)")
    p.add_argument("--list-passes", action="store_true", help="list the passes, their options and the named pipelines")
    add_plugin_option(p)
    p.set_defaults(run=run)


CONSTS = ("auto", "resources", "handles")
STDIN_HAS_NO_CONSTS = ("no safetensors file comes with stdin (print the IR with its resources: "
                       "rlxpy opt --consts resources, or read the .rlx file itself)")


def list_passes() -> str:
    lines = ["passes:"]
    for name in sorted(PASSES):
        cls = PASSES[name]
        plugin = plugin_of(name)
        lines.append(f"  {name:<16}{cls.summary}" + (f" (plugin {plugin})" if plugin else ""))
        for f in dataclasses.fields(cls):
            kind = getattr(f.type, "__name__", f.type)     # a class, or its name as a string annotation
            default = str(f.default).lower() if isinstance(f.default, bool) else f.default
            bounds = option_range(f)
            lines.append(f"  {'':<18}{f.name.replace('_', '-')}: {kind} = {default}" + (f" ({bounds})" if bounds else ""))
    lines.append("pipelines:")
    for name, text in PIPELINES.items():
        lines.append(f"  {name:<16}{text or '(no passes)'}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    load_plugins(args)
    if args.list_passes:
        print(list_passes())
        return 0
    if not args.input:
        raise RlxError("missing IN.rlx (or --list-passes)")
    if args.opt_bisect_limit is not None and args.opt_bisect_limit < 0:
        raise RlxError(f"--opt-bisect-limit must be >= 0, got {args.opt_bisect_limit}")
    if args.input == "-":
        graph = parse_graph(sys.stdin.read(), source="<stdin>", consts_from=STDIN_HAS_NO_CONSTS)
    else:
        graph = load_graph(args.input)
    pm = PassManager(
        args.pipeline, verify_each=args.verify_each, print_ir_before=args.print_ir_before,
        print_ir_after=args.print_ir_after, print_ir_after_all=args.print_ir_after_all,
        print_ir_after_change=args.print_ir_after_change, time_passes=args.time_passes,
        dump_dir=args.dump_dir, dump_constants=dump_constants(args), opt_bisect_limit=args.opt_bisect_limit,
        reproducer_dir=args.reproducer_dir,
    )
    result = pm.run(graph)
    if args.report:
        for remark in pm.log.remarks:
            print(remark, file=sys.stderr)
    if args.output:
        save_graph(result, args.output, consts="resources" if args.consts == "resources" else "handles")
        return 0
    mode = args.consts
    if mode == "auto":
        mode = "handles" if _is_terminal(sys.stdout) else "resources"
    sys.stdout.write(print_graph(result, consts=mode) + "\n")
    handles = [n for n in result.nodes if is_handle_const(n)]
    if args.consts == "auto" and mode == "handles" and handles:
        sys.stdout.flush()
        size = sum(n.type.nbytes for n in handles)
        count = f"{len(handles)} constant{'s' if len(handles) > 1 else ''}"
        print(f"rlxpy opt: note: {count} ({size / 1e6:.3g} MB) {'were' if len(handles) > 1 else 'was'} shown by handle only; "
              "to keep them, save with -o FILE.rlx, pipe or redirect the output, or pass --consts resources",
              file=sys.stderr)
    return 0


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):      # no isatty, or a closed stream
        return False
