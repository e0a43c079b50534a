"""Progress of long commands, on stderr: only when stderr is a terminal, unless `--progress`
forces it (for a captured log) or `--no-progress` turns it off. Never in pipes or CI logs by
default. Bars are tqdm's; stages are plain lines, one as each completes.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from typing import Iterator


def add_progress_option(p) -> None:
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show progress on stderr (default: only when stderr is a terminal)")


def wanted(args) -> bool:
    """--progress / --no-progress if given, else whether stderr is a terminal."""
    flag = getattr(args, "progress", None)
    if flag is not None:
        return bool(flag)
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:                      # a closed stream
        return False


def bar(args, *, total: int | None = None, desc: str, unit: str = "it"):
    """A tqdm bar on stderr, disabled unless progress is wanted (a disabled bar costs nothing)."""
    from tqdm import tqdm

    class Bar(tqdm):
        monitor_interval = 0        # no monitor thread waking up in the middle of timed work
    return Bar(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not wanted(args),
               dynamic_ncols=True, leave=True)


class CallbackBar:
    """`(done, total, what)` callbacks (the shape the benchmark reports in) shown as a tqdm bar,
    created at the first call."""

    def __init__(self, args, desc: str, unit: str):
        self.args, self.desc, self.unit = args, desc, unit
        self.bar = None

    def __call__(self, done: int, total: int, what: str = "") -> None:
        if self.bar is None:
            self.bar = bar(self.args, total=total, desc=self.desc, unit=self.unit)
        elif self.bar.total != total:
            self.bar.total = total
        if what:
            self.bar.set_postfix_str(what, refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Stages:
    """Times named stages; with progress on, prints `PROG: STAGE  12.3 ms` on stderr as each ends."""

    def __init__(self, args, prog: str):
        self.show, self.prog = wanted(args), prog
        self.times: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.times[name] = seconds = time.perf_counter() - start
        if self.show:
            print(f"{self.prog}: {name:<9}{seconds * 1e3:9.1f} ms", file=sys.stderr, flush=True)
