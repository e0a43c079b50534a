"""Was the machine busy while we timed? Other processes' CPU time on the cores this process may
run on, measured over the timed interval.

    meter = BusyMeter(threads)
    ...                                  # the timed work
    busy = meter.stop()                  # Busy: cores others kept busy, ours, steal, a warning

On Linux the figures come from the per-CPU lines of /proc/stat (busy = user + nice + system + irq +
softirq jiffies, on the CPUs of this process's affinity mask) minus this process's own CPU time
(os.times: every thread of it), over the same wall interval; steal (time the hypervisor gave our
virtual CPUs to someone else) is counted apart. Elsewhere the 1-minute load average minus our own
use is a coarse fallback.

Others only slow the timed cores when they do not fit on the cores the benchmark leaves idle, so
the warning compares `others - (cpus - threads)` with the cores timed: more than WARN_FRACTION of
them (or that much steal) and the timings are suspect.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

PROC_STAT = "/proc/stat"
WARN_FRACTION = 0.10
_BUSY_FIELDS = (0, 1, 2, 5, 6)        # user nice system irq softirq (guest time is inside user)
_STEAL_FIELD = 7


@dataclass(frozen=True)
class Sample:
    wall: float                 # time.monotonic(), seconds
    ours: float                 # this process's user + system CPU seconds
    busy: float | None          # busy CPU seconds of our CPUs, from /proc/stat (None: not available)
    steal: float | None
    load: float | None          # the 1-minute load average, for the fallback


@dataclass(frozen=True)
class Busy:
    method: str                 # "proc-stat" or "loadavg"
    seconds: float              # the wall interval measured
    cpus: int                   # cores this process may run on
    threads: int                # cores the benchmark timed
    total_cores: float          # average cores busy on our CPUs, ours included
    ours_cores: float           # average cores this process kept busy
    others_cores: float         # average cores other processes kept busy
    steal_cores: float          # average cores the hypervisor took
    contended: float            # fraction of the timed cores others must have shared
    warning: str = ""

    def to_json(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One line of figures, for the table."""
        steal = f", steal {self.steal_cores:.2f}" if self.method == "proc-stat" else ""
        return (f"other processes kept {self.others_cores:.2f} of {self.cpus} core(s) busy on average while "
                f"timing (this one {self.ours_cores:.2f}{steal}; {self.method}, {self.seconds:.1f} s)")


def _cpus() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def sample(cpus: set[int] | None = None) -> Sample:
    """The counters now: our CPU time, and the busy and steal time of `cpus` (default: ours)."""
    times = os.times()
    ours = times.user + times.system
    busy = steal = None
    wanted = _cpus() if cpus is None else cpus
    try:
        with open(PROC_STAT) as f:
            lines = [line.split() for line in f if line.startswith("cpu") and not line.startswith("cpu ")]
        hz = os.sysconf("SC_CLK_TCK")
        busy = steal = 0.0
        for fields in lines:
            if wanted is not None and int(fields[0][3:]) not in wanted:
                continue
            values = [int(v) for v in fields[1:]]
            busy += sum(values[i] for i in _BUSY_FIELDS if i < len(values)) / hz
            steal += (values[_STEAL_FIELD] if len(values) > _STEAL_FIELD else 0) / hz
    except (OSError, ValueError, IndexError):
        busy = steal = None
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = None
    return Sample(time.monotonic(), ours, busy, steal, load)


def measure(start: Sample, end: Sample, threads: int, cpus: int) -> Busy:
    """What happened between two samples, with the warning if others shared the timed cores."""
    seconds = max(end.wall - start.wall, 1e-9)
    ours = max(0.0, (end.ours - start.ours) / seconds)
    if start.busy is not None and end.busy is not None:
        method = "proc-stat"
        total = max(0.0, (end.busy - start.busy) / seconds)
        steal = max(0.0, (end.steal - start.steal) / seconds)
    elif end.load is not None:
        method, total, steal = "loadavg", end.load, 0.0
    else:
        return Busy("none", seconds, cpus, threads, 0.0, ours, 0.0, 0.0, 0.0,
                    "could not tell whether the machine was busy (no /proc/stat, no load average)")
    others = max(0.0, total - ours)
    contended = max(0.0, others - max(0, cpus - threads)) / threads
    warnings = []
    if contended > WARN_FRACTION:
        warnings.append(f"other processes used {contended:.0%} of the {threads} timed core(s) "
                        f"({others:.2f} cores busy besides this benchmark on {cpus})")
    if steal / threads > WARN_FRACTION:
        warnings.append(f"the hypervisor took {steal / threads:.0%} of the timed core(s) (steal)")
    warning = ("the machine was busy while timing: " + "; ".join(warnings) + ": the times are slower and noisier "
               "than on a quiet machine") if warnings else ""
    return Busy(method, seconds, cpus, threads, total, ours, others, steal, contended, warning)


class BusyMeter:
    """Measures from construction to `stop()`."""

    def __init__(self, threads: int):
        self.threads = threads
        self.cpu_set = _cpus()
        self.cpus = len(self.cpu_set) if self.cpu_set else (os.cpu_count() or 1)
        self.start = sample(self.cpu_set)

    def stop(self) -> Busy:
        return measure(self.start, sample(self.cpu_set), self.threads, self.cpus)
