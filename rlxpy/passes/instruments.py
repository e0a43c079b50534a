"""Instruments hang around a pass-manager run and watch it, as in MLIR and TVM: print the IR
before or after passes, time them, dump every step to numbered files.

An instrument overrides any of the hooks below; the manager calls them in order.
"""

from __future__ import annotations

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


@dataclass
class DumpDir(Instrument):
    """Write the input and the result of every pass application as numbered .rlx files
    (`000-input.rlx`, `001-fold-constants.rlx`, ...), with their constants beside them."""

    directory: Path
    written: list[Path] = field(default_factory=list)

    def run_begin(self, graph, passes):
        self.directory = Path(self.directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RlxError(f"dump directory {self.directory}: {e.strerror}") from None
        self.written = []
        self._save(graph, "000-input")

    def after_pass(self, p, index, before, after, changed, seconds):
        self._save(after, f"{index:03d}-{p.name}")

    def _save(self, graph: Graph, stem: str) -> None:
        from ..ir.textio import save_graph
        path = self.directory / f"{stem}.rlx"
        save_graph(graph, path)
        self.written.append(path)


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
