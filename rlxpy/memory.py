"""Memory: how much this process may ever use, and errors that say what needed how much.

Two guards, both raising `OutOfMemoryError`:

- `check_fits(need, ...)` refuses, before anything is allocated, a call that can never fit: one
  that needs more than the smallest of physical memory + swap, the cgroup's memory limit and the
  RLIMIT_AS / RLIMIT_DATA resource limits. It compares with the limits themselves, not with what
  is free now, so it never refuses a graph that might fit.
- `allocating(what, nbytes)` turns a MemoryError raised while `what` is made into one naming it
  and the bytes it needed, with the limit in force.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

from .errors import OutOfMemoryError

UNLIMITED = 1 << 62           # cgroup v1 writes "no limit" as a huge page-rounded number


@dataclass(frozen=True)
class Limit:
    bytes: int
    what: str                 # e.g. "RLIMIT_AS (ulimit -v)"

    def __str__(self) -> str:
        return f"{format_bytes(self.bytes)} ({self.what})"


def format_bytes(n: int) -> str:
    """Bytes in GiB or MiB (KiB and B below that), one decimal."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes (empty where there is none)."""
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return out


def _read_number(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) < UNLIMITED else None


def cgroup_limits(swap: int, proc: Path = Path("/proc/self/cgroup"),
                  mount: Path = Path("/sys/fs/cgroup")) -> list[Limit]:
    """The memory limits of this process's cgroup and its ancestors (cgroup v2 and v1), each with
    swap added where the cgroup allows it."""
    try:
        lines = proc.read_text().splitlines()
    except OSError:
        return []
    limits = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            root, files = mount, ("memory.max", "memory.swap.max")
        elif "memory" in controllers.split(","):
            root, files = mount / "memory", ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
        else:
            continue
        directory = root / path.lstrip("/")
        while True:
            memory = _read_number(directory / files[0])
            if memory is not None:
                extra = _read_number(directory / files[1])
                if controllers == "":            # v2: swap.max is swap on top of memory.max
                    total = memory + (swap if extra is None else min(extra, swap))
                else:                            # v1: memsw is memory + swap together
                    total = memory + swap if extra is None else max(extra, memory)
                limits.append(Limit(total, f"cgroup {directory / files[0]}" + (" + swap" if total > memory else "")))
            if directory == root or directory == directory.parent:
                break
            directory = directory.parent
    return limits


def memory_limits() -> list[Limit]:
    """Every upper bound known on the memory this process may use."""
    limits = []
    info = _meminfo()
    swap = info.get("SwapTotal", 0)
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        physical = info.get("MemTotal", 0)
    if physical > 0:
        limits.append(Limit(physical + swap, "physical memory + swap" if swap else "physical memory, no swap"))
    limits += cgroup_limits(swap)
    try:
        import resource
    except ImportError:                           # not on this platform
        return limits
    for name, shell in (("RLIMIT_AS", "ulimit -v"), ("RLIMIT_DATA", "ulimit -d")):
        kind = getattr(resource, name, None)
        if kind is None:
            continue
        soft, _ = resource.getrlimit(kind)
        if soft != resource.RLIM_INFINITY and soft > 0:
            limits.append(Limit(soft, f"{name}, {shell}"))
    return limits


def memory_limit() -> Limit | None:
    """The smallest bound on the memory this process may use, or None when none is known."""
    return min(memory_limits(), key=lambda limit: limit.bytes, default=None)


def check_fits(need: Mapping[str, int], what: str) -> None:
    """Refuse `what` (e.g. "a call of @g on llvm") when the sum of `need` (part -> bytes) is more
    than this process may ever use."""
    total = sum(need.values())
    limit = memory_limit()
    if limit is None or total <= limit.bytes:
        return
    parts = ", ".join(f"{part} {format_bytes(n)}" for part, n in need.items() if n)
    raise OutOfMemoryError(f"{what} needs {format_bytes(total)} ({parts}), more than this process may ever "
                           f"use: {limit}; refused at compile time, before allocating anything")


@contextmanager
def allocating(what: str, nbytes: int) -> Iterator[None]:
    """Turn a MemoryError while making `what` (`nbytes` large) into an `OutOfMemoryError` naming it."""
    try:
        yield
    except OutOfMemoryError:
        raise                                     # already names its culprit
    except MemoryError as e:
        raise out_of_memory(what, nbytes, e) from None


def out_of_memory(what: str, nbytes: int, cause: BaseException | None = None) -> OutOfMemoryError:
    limit = memory_limit()
    detail = f" ({cause})" if cause is not None and str(cause) else ""
    bound = f"; this process may use at most {limit}" if limit is not None else ""
    return OutOfMemoryError(f"out of memory: {what} needs {format_bytes(nbytes)}{detail}{bound}")
