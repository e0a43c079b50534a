"""The PassManager: runs a pipeline of passes over a graph, verifying after each one.

    pm = PassManager("fold-constants,fuse-epilogue,cse,dce", print_ir_after_change=True)
    optimised = pm.run(graph)
    pm.log.applications, pm.log.remarks

Around every pass application it calls the instruments, verifies the result (unless
`verify_each=False`: a failure names the pass), and honours `opt_bisect_limit=N` (only the first N
applications run; the rest are reported as skipped, as LLVM's -opt-bisect-limit does). When a pass
raises or breaks the graph, a reproducer (the IR it was given and the pass) is written and its
path named in the error; its replay line loads the pass plugins that were loaded.
"""

from __future__ import annotations

import shlex
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Sequence

from ..config import debug_level
from ..errors import OutOfMemoryError, PassError, RlxError
from ..ir.compare import structural_diff
from ..ir.graph import Graph
from ..ir.verify import verify
from .base import Pass, PassContext, Remark
from .instruments import DumpDir, Instrument, PassTiming, PrintIR, names
from .pipeline import format_pipeline, parse_pipeline
from .plugins import loaded_plugins


@dataclass
class Application:
    index: int          # 1-based position in the run
    spelling: str       # the pass with its options
    ran: bool           # False when the bisect limit skipped it
    changed: bool = False
    seconds: float = 0.0


@dataclass
class RunLog:
    applications: list[Application] = field(default_factory=list)
    remarks: list[Remark] = field(default_factory=list)

    def missed(self, pass_name: str | None = None) -> list[Remark]:
        return [r for r in self.remarks if r.kind == "missed" and pass_name in (None, r.pass_name)]

    def report(self, pass_name: str = "fuse-epilogue") -> str:
        """One pass's remarks as a report: what it did, and every place it did not apply and why."""
        mine = [r for r in self.remarks if r.pass_name == pass_name]
        applied = [r for r in mine if r.kind == "applied"]
        missed = [r for r in mine if r.kind == "missed"]
        lines = [f"{pass_name} report: {len(applied)} applied, {len(missed)} missed"]
        lines += [f"  applied %{r.node}: {r.message}" for r in applied]
        lines += [f"  missed  %{r.node}: {r.message}" for r in missed]
        return "\n".join(lines)

    def bisect_lines(self) -> list[str]:
        return [f"BISECT: {'running' if a.ran else 'NOT running'} pass ({a.index}) {a.spelling}"
                for a in self.applications]


class PassManager:
    def __init__(self, pipeline: str | Sequence[Pass] = "default", *, verify_each: bool = True,
                 print_ir_before: Sequence[str] | str | None = None,
                 print_ir_after: Sequence[str] | str | None = None,
                 print_ir_after_all: bool = False, print_ir_after_change: bool = False,
                 time_passes: bool = False, dump_dir: str | Path | None = None,
                 dump_constants: str | None = None, opt_bisect_limit: int | None = None, reproducer_dir: str | Path | None = None,
                 instruments: Sequence[Instrument] = (), stream: IO[str] | None = None):
        self.passes: list[Pass] = parse_pipeline(pipeline) if isinstance(pipeline, str) else list(pipeline)
        self.verify_each = verify_each
        self.opt_bisect_limit = opt_bisect_limit
        self.reproducer_dir = Path(reproducer_dir) if reproducer_dir else None
        self.stream = stream
        self.instruments: list[Instrument] = list(instruments)
        before = names(print_ir_before, "print-ir-before")
        after = names(print_ir_after, "print-ir-after")
        if print_ir_after_all:
            after = "all"
        if print_ir_after_change and not after:
            after = "all"                  # alone, it means: after every pass that changed the IR
        if debug_level() >= 2:
            after = "all"
        if before or after:
            self.instruments.append(PrintIR(before, after, print_ir_after_change, stream))
        self.timing = PassTiming(stream) if time_passes else None
        if self.timing:
            self.instruments.append(self.timing)
        if dump_dir is not None:
            self.instruments.append(DumpDir(Path(dump_dir), dump_constants or "small", stream))
        elif dump_constants is not None:
            raise PassError(f"dump_constants={dump_constants!r} applies only with dump_dir")
        self.log = RunLog()

    def __str__(self) -> str:
        return format_pipeline(self.passes)

    def __repr__(self) -> str:
        return f"PassManager({str(self)!r})"

    def run(self, graph: Graph) -> Graph:
        self.log = RunLog()
        ctx = PassContext(self.log.remarks)
        if debug_level() >= 1:
            self._write(f"rlxpy: pipeline '{self}' on @{graph.name} ({len(graph)} nodes)\n")
        for inst in self.instruments:
            inst.run_begin(graph, self.passes)
        for index, p in enumerate(self.passes, start=1):
            if self.opt_bisect_limit is not None and index > self.opt_bisect_limit:
                self.log.applications.append(Application(index, p.spelling(), ran=False))
                continue
            graph = self._apply(p, index, graph, ctx)
        for inst in self.instruments:
            inst.run_end(graph)
        if self.opt_bisect_limit is not None:
            self._write("".join(line + "\n" for line in self.log.bisect_lines()))
        return graph

    def _apply(self, p: Pass, index: int, graph: Graph, ctx: PassContext) -> Graph:
        for inst in self.instruments:
            inst.before_pass(p, index, graph)
        ctx.current = p.name
        start = time.perf_counter()
        try:
            result = p.run(graph, ctx)
        except MemoryError as e:          # not a compiler bug: no reproducer, just say where
            what = str(e) if isinstance(e, OutOfMemoryError) else f"out of memory ({e or 'MemoryError'})"
            raise OutOfMemoryError(f"pass '{p.spelling()}' (application {index}): {what}") from None
        except Exception as e:  # a pass that raises is a compiler bug or a bad option: keep a reproducer
            path = self._reproducer(p, graph, f"raised {type(e).__name__}: {e}", traceback.format_exc())
            raise PassError(f"pass '{p.spelling()}' (application {index}) failed: {type(e).__name__}: {e}; "
                            f"reproducer: {path}") from e
        seconds = time.perf_counter() - start
        if self.verify_each:
            try:
                verify(result)
            except RlxError as e:
                path = self._reproducer(p, graph, f"produced an invalid graph: {e}")
                raise PassError(f"pass '{p.spelling()}' (application {index}) produced an invalid graph: "
                                f"{e}; reproducer: {path}") from e
        changed = result is not graph and structural_diff(graph, result) is not None
        self.log.applications.append(Application(index, p.spelling(), True, changed, seconds))
        for inst in self.instruments:
            inst.after_pass(p, index, graph, result, changed, seconds)
        return result

    def _reproducer(self, p: Pass, graph: Graph, why: str, trace: str = "") -> Path:
        """Save the IR the failing pass was given, with a header that says how to replay it."""
        from ..ir.textio import save_graph
        directory = self.reproducer_dir or Path(tempfile.mkdtemp(prefix="rlxpy-reproducer-"))
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"reproducer-{p.name}.rlx"
        plugins = "".join(f" --load-pass-plugin {shlex.quote(plugin.spec)}" for plugin in loaded_plugins())
        comment = [f"rlxpy reproducer: pass '{p.spelling()}' {why}".replace("\n", " "),
                   f"replay: rlxpy opt {path.name} -p '{p.spelling()}'{plugins}",
                   f"full pipeline: {self}"]
        comment += trace.strip().splitlines()[-6:]
        save_graph(graph, path, header="\n".join(comment))
        return path

    def _write(self, text: str) -> None:
        out = self.stream or sys.stderr
        out.write(text)
        out.flush()
