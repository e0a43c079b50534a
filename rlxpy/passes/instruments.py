"""Instruments hang around a pass-manager run and watch it, as in MLIR and TVM: print the IR
before or after passes, time them, dump every step to numbered files.

An instrument overrides any of the hooks below; the manager calls them in order.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterable

from ..errors import PassError, RlxError
from ..ir.graph import Graph
from .base import PASSES, Pass


class Instrument:
    def run_begin(self, graph: Graph, passes: list[Pass]) -> None: ...
    def before_pass(self, p: Pass, index: int, graph: Graph) -> None: ...
    def after_pass(self, p: Pass, index: int, before: Graph, after: Graph, changed: bool, seconds: float) -> None: ...
    def run_end(self, graph: Graph) -> None: ...


def dump_header(when: str, p: Pass | None, index: int | None = None) -> str:
    """MLIR's dump banner: `// -----// IR Dump After FuseEpilogue (fuse-epilogue) //----- //`."""
    what = f"{p.title} ({p.spelling()})" if p is not None else "input"
    return f"// -----// IR Dump {when} {what} //----- //"


@dataclass
class PrintIR(Instrument):
    """Print the IR before/after the named passes (or all), optionally only when it changed."""

    before: frozenset[str] | str = frozenset()      # pass names, or "all"
    after: frozenset[str] | str = frozenset()
    only_changed: bool = False
    stream: IO[str] | None = None

    def _wants(self, which: frozenset[str] | str, p: Pass) -> bool:
        return which == "all" or p.name in which

    def before_pass(self, p, index, graph):
        if self._wants(self.before, p):
            self._print(dump_header("Before", p), graph)

    def after_pass(self, p, index, before, after, changed, seconds):
        if self._wants(self.after, p) and (changed or not self.only_changed):
            self._print(dump_header("After", p), after)

    def _print(self, header: str, graph: Graph) -> None:
        from ..ir.printer import print_graph
        out = self.stream or sys.stderr
        out.write(f"{header}\n{print_graph(graph)}\n")
        out.flush()


@dataclass
class PassTiming(Instrument):
    """Wall time of each pass application; a report like MLIR's -mlir-timing at the end."""

    stream: IO[str] | None = None
    times: list[tuple[str, float]] = field(default_factory=list)

    def run_begin(self, graph, passes):
        self.times = []

    def after_pass(self, p, index, before, after, changed, seconds):
        self.times.append((p.spelling(), seconds))

    def report(self) -> str:
        total = sum(s for _, s in self.times) or 1e-12
        lines = ["===" + "-" * 70 + "===", "Pass execution timing report".center(76), "===" + "-" * 70 + "===",
                 f"  Total Execution Time: {total:.4f} seconds", "", "  ----Wall Time----  ----Name----"]
        for name, s in self.times:
            lines.append(f"  {s:8.4f} ({100 * s / total:5.1f}%)  {name}")
        lines.append(f"  {total:8.4f} (100.0%)  Total")
        return "\n".join(lines)

    def run_end(self, graph):
        out = self.stream or sys.stderr
        out.write(self.report() + "\n")


DUMP_CONSTANTS = ("none", "small", "all")
# With dump_constants="small", a constant of at most this many bytes is written in every dump.
SMALL_CONSTANT_BYTES = 64 * 1024


@dataclass
class DumpDir(Instrument):
    """Write the input and the result of every pass application as numbered .rlx files
    (`000-input.rlx`, `001-fold-constants.rlx`, ...), with their constants beside them, and say
    at the end how much was written.

    `constants` decides how much constant data: "all" writes every large constant in every dump;
    "small" (the default) writes each one larger than SMALL_CONSTANT_BYTES once, in the first dump
    of the run that holds that array, and later dumps name the file that has it in their header
    (`load_graph` reads it from there); "none" writes no constant data, and each dump's header
    says so.
    """

    directory: Path
    constants: str = "small"
    stream: IO[str] | None = None
    written: list[Path] = field(default_factory=list)
    bytes_written: int = 0

    def __post_init__(self):
        if self.constants not in DUMP_CONSTANTS:
            raise PassError(f"dump_constants must be one of {', '.join(map(repr, DUMP_CONSTANTS))}, "
                            f"got {self.constants!r}")
        self._first: dict[int, tuple[object, str, str]] = {}   # id(array) -> (array, file, key)

    def run_begin(self, graph, passes):
        self.directory = Path(self.directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RlxError(f"dump directory {self.directory}: {e.strerror}") from None
        self.written, self.bytes_written, self._first = [], 0, {}
        self._save(graph, "000-input")

    def after_pass(self, p, index, before, after, changed, seconds):
        self._save(after, f"{index:03d}-{p.name}")

    def run_end(self, graph):
        self._first = {}                    # the arrays are not needed any more
        out = self.stream or sys.stderr
        dumps = sum(path.suffix == ".rlx" for path in self.written)
        size = self.bytes_written
        amount = f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.1f} KiB"
        out.write(f"rlxpy: wrote {dumps} IR dumps to {self.directory}/: {len(self.written)} files, {amount} "
                  f"(dump_constants='{self.constants}')\n")
        out.flush()

    def _save(self, graph: Graph, stem: str) -> None:
        from ..ir.printer import is_handle_const
        from ..ir.textio import CONSTS_IN, CONSTS_NONE, consts_path, save_graph
        path = self.directory / f"{stem}.rlx"
        handles = [n for n in graph.nodes if is_handle_const(n) and n.value is not None]
        omit: set[str] = set()
        header: list[str] = []
        if self.constants == "none" and handles:
            omit = {n.name for n in handles}
            header.append(f"{CONSTS_NONE} (dump_constants='none'): the data of {len(handles)} constant(s) "
                          f"given by handle was not saved")
        elif self.constants == "small":
            elsewhere: dict[str, dict[str, str]] = {}
            for n in handles:
                if n.value.nbytes <= SMALL_CONSTANT_BYTES:
                    continue
                seen = self._first.get(id(n.value))
                if seen is not None and seen[0] is n.value and seen[1] != consts_path(path).name:
                    omit.add(n.name)
                    elsewhere.setdefault(seen[1], {})[n.name] = seen[2]
                else:
                    self._first[id(n.value)] = (n.value, consts_path(path).name, n.name)
            if elsewhere:
                header.append(f"rlxpy dump: each large constant is written once per run (dump_constants='small'); "
                              f"{len(omit)} of this graph's are in earlier dumps:")
                header += [f"{CONSTS_IN}{file} {json.dumps(names)}" for file, names in elsewhere.items()]
        files = save_graph(graph, path, header="\n".join(header), omit_consts=omit)
        self.written += files
        self.bytes_written += sum(f.stat().st_size for f in files)


def names(spec: Iterable[str] | str | None, option: str = "print-ir-after") -> frozenset[str] | str:
    """Normalise a `print_ir_before`/`after` argument: "all", or a set of registered pass names
    (an unknown name is an error, never a silent no-op)."""
    if spec is None:
        return frozenset()
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    picked = frozenset(s.strip() for s in items if s.strip())
    if "all" in picked:
        return "all"
    unknown = sorted(picked - set(PASSES))
    if unknown:
        raise PassError(f"{option}: unknown pass '{unknown[0]}'; known passes: {', '.join(sorted(PASSES))} (or all)")
    return picked
