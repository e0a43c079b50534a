"""The `rlxpy` command. Each subcommand lives in its own module with `add_parser` and `run`.

A user's mistake (a bad option, a missing or malformed file, an input that does not fit) prints one
line, `rlxpy <command>: error: ...`, and exits with status 2: never a traceback (set
RLXPY_TRACEBACK=1 to see one anyway).
"""

from __future__ import annotations

import argparse
import os
import sys

from .. import __version__
from ..config import traceback_wanted
from ..errors import RlxError
from . import bench, difftest, fpn_neck, graph, opt, run

COMMANDS = [fpn_neck, run, opt, graph, difftest, bench]


class UsageError(RlxError):
    """A bad command-line option, reported under the (sub)command it was given to."""

    def __init__(self, message: str, prog: str):
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise UsageError(f"{message} (see '{self.prog} --help')", self.prog)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rlxpy", description="rlxpy: a small graph-IR compiler for ML blocks.",
                     epilog=f"rlxpy {__version__}. 'rlxpy COMMAND --help' shows a command's options.")
    parser.add_argument("--version", action="version", version=f"rlxpy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    prog = "rlxpy"
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        prog = f"rlxpy {args.command}"
        return int(args.run(args) or 0)
    except BrokenPipeError:                      # e.g. `rlxpy ... | head`: the reader left
        sys.stdout = open(os.devnull, "w")
        return 0
    except (RlxError, OSError) as e:
        if traceback_wanted():
            raise
        prog = getattr(e, "prog", prog)
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    except MemoryError as e:                     # one not converted where it was allocated
        if traceback_wanted():
            raise
        print(f"{prog}: error: out of memory ({e or 'MemoryError'}); RLXPY_TRACEBACK=1 shows where", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
