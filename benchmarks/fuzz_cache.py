"""Fuzz the object cache with damaged entries: every compile must still succeed, with the right
result and a "miss" or "corrupt (...)" status; never a crash, a hang or a wrong answer.

    python benchmarks/fuzz_cache.py [--seconds 60] [--seed 0] [--timeout 60] [--verbose]

Two graphs are compiled once into a cache to get good entries: the SAM 2 tiny neck (64x64, four
kernels with relocations to their constants) and a random difftest graph whose code calls memset
or memcpy (undefined symbols the loader must resolve). Then, trial after trial, one of them is
copied into a fresh cache directory, damaged in one way chosen at random, and compiled twice in a
child process (forked, with a timeout): the first compile must report the damage and recompile,
the outputs must equal the interpreter's, and the second compile must hit the rewritten entry.
An abort or a hang in the child is reported with the damage that caused it, and the seed and trial
number that reproduce it.

The damage, in two families:

  file     the entry's bytes or the file itself, checksum left as it is: truncated, bytes flipped,
           zeroed, appended to, a huge or short declared length, another graph's entry, garbage,
           empty, another format; a FIFO, a directory, symbolic links to /dev/zero, to a directory,
           to nowhere. All of it must be caught.
  forged   the object code inside a well-formed entry, its checksum recomputed, as anyone who can
           write the cache directory can do: bytes of the ELF header, section headers, symbol,
           string and relocation tables flipped or set to extremes, section headers swapped, the
           table zeroed, the object truncated or replaced by another graph's. It must be caught
           before LLVM's loader sees it (the loader aborts the process on most of it).

A forgery that keeps the structure valid (a relocation addend, a symbol moved inside its section,
bytes of machine code) cannot be told from real code by any check: such an entry is a hit and runs
as forged. The fuzz reports those separately ("undetectable forgery": right, wrong or crashed
when run) and does not count them as failures; that is what keeping the cache private is for.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import resource
import select
import shutil
import signal
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")    # no BLAS threads in a process that forks
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

ENTRY_HEADER = struct.Struct("<8sI32sQ32s")          # the entry format, read independently of rlxpy
LENGTH_AT = 44
CHILD_MEMORY = 4 << 30                               # address space a trial may use


@dataclass
class Good:
    """A good entry and what its graph should compute."""
    name: str
    graph: object
    params: dict
    inputs: dict
    expected: dict
    filename: str
    data: bytes
    obj_range: tuple[int, int]                       # where the object code sits in data
    regions: list[tuple[str, int, int]]              # the object's structures: (what, start, size)
    code: list[tuple[int, int]]                      # its machine code sections


# -- the entries ---------------------------------------------------------------------------------


def split(data: bytes) -> tuple[dict, bytes, bytes]:
    payload = data[ENTRY_HEADER.size:]
    (meta_len,) = struct.unpack_from("<I", payload)
    meta = json.loads(payload[4:4 + meta_len])
    start = 4 + meta_len
    return meta, payload[start:start + meta["object_bytes"]], payload[start + meta["object_bytes"]:]


def reseal(data: bytes, obj: bytes, meta_change=None) -> bytes:
    """The entry with other object code (and header fields), its checksum recomputed."""
    magic, fmt, key, _, _ = ENTRY_HEADER.unpack_from(data)
    meta, _, ir = split(data)
    meta = {**meta, "object_bytes": len(obj)}
    if meta_change:
        meta = meta_change(meta)
    header = json.dumps(meta).encode()
    payload = struct.pack("<I", len(header)) + header + obj + ir
    return ENTRY_HEADER.pack(magic, fmt, key, len(payload), hashlib.sha256(payload).digest()) + payload


def layout(obj: bytes) -> tuple[list[tuple[str, int, int]], list[tuple[int, int]]]:
    """The ELF structures of an object (with pyelftools), and its code sections."""
    from elftools.elf.elffile import ELFFile
    e = ELFFile(io.BytesIO(obj))
    regions = [("ELF header", 0, 64), ("section headers", e["e_shoff"], e["e_shnum"] * e["e_shentsize"])]
    code = []
    for s in e.iter_sections():
        if s["sh_type"] in ("SHT_SYMTAB", "SHT_STRTAB", "SHT_RELA"):
            regions.append((f"{s.name} ({s['sh_type'][4:].lower()})", s["sh_offset"], s["sh_size"]))
        elif s["sh_flags"] & 0x4 and s["sh_size"]:
            code.append((s["sh_offset"], s["sh_size"]))
    return regions, code


def good_entries(work: Path) -> list[Good]:
    import rlxpy
    from rlxpy.difftest.generate import seeded_case
    from rlxpy.models.sam2 import (FpnNeckConfig, build_fpn_neck_ir, synthetic_fpn_neck_inputs,
                                   synthetic_fpn_neck_weights)
    cfg = FpnNeckConfig.for_hiera("tiny", image_size=(64, 64), interp="bilinear")
    cases = [("tiny neck", build_fpn_neck_ir(cfg), synthetic_fpn_neck_weights(cfg, 1),
              synthetic_fpn_neck_inputs(cfg, 1))]
    for seed in range(1000):                  # a random graph whose code calls the C library
        case = seeded_case(seed)
        exe = rlxpy.compile(case.graph, case.params, target="llvm", cache=False)
        obj = exe.module.entry.object_code
        if b"memset\0" in obj or b"memcpy\0" in obj:
            cases.append((f"random graph {seed}", case.graph, case.params, case.inputs))
            break
    goods = []
    for i, (name, graph, params, inputs) in enumerate(cases):
        cache = work / f"good{i}"
        exe = rlxpy.compile(graph, params, target="llvm", cache=cache)
        assert exe.cache_status == "miss", exe.cache_status
        entry, = (cache / "llvm").glob("*.rlxobj")
        data = entry.read_bytes()
        meta, obj, _ = split(data)
        start = ENTRY_HEADER.size + 4 + len(json.dumps(meta).encode())
        assert data[start:start + len(obj)] == obj
        regions, code = layout(obj)
        expected = rlxpy.compile(graph, params, target="interp")(**inputs)
        goods.append(Good(name, graph, params, inputs, expected, entry.name, data, (start, start + len(obj)),
                          regions, code))
    return goods


# -- the damage ----------------------------------------------------------------------------------


def flip(data: bytes, rng: random.Random, start: int, size: int, count: int) -> tuple[bytes, str]:
    out, where = bytearray(data), []
    for _ in range(count):
        at = start + rng.randrange(size)
        out[at] ^= rng.randrange(1, 256)
        where.append(at - start)
    return bytes(out), f"{count} byte(s) at {sorted(where)}"


EXTREMES = (0, 1, 0x7F, 0xFF, 0xFFFF, 0xFFFFFFFF, 2**63, 2**64 - 1)


def set_field(data: bytes, rng: random.Random, start: int, size: int) -> tuple[bytes, str]:
    width = rng.choice((1, 2, 4, 8))
    if size < width:
        width = 1
    at = start + rng.randrange(size - width + 1)
    value = rng.choice(EXTREMES) % (1 << (8 * width))
    out = bytearray(data)
    out[at:at + width] = value.to_bytes(width, "little")
    return bytes(out), f"{width}-byte field at {at - start} set to {value:#x}"


def file_damage(g: Good, other: Good, rng: random.Random, path: Path, work: Path) -> str:
    """Damage the entry file (or put something else at its path); returns what was done."""
    data = g.data
    kind = rng.choice(["truncate", "flip", "zero", "append", "huge length", "short length", "other entry",
                       "garbage", "empty", "other format", "fifo", "directory", "link to /dev/zero",
                       "link to a directory", "dangling link"])
    if kind == "truncate":
        n = rng.randrange(len(data))
        path.write_bytes(data[:n])
        return f"truncated to {n} of {len(data)} bytes"
    if kind == "flip":
        out, what = flip(data, rng, 0, len(data), rng.choice((1, 1, 2, 8)))
        path.write_bytes(out)
        return f"flipped {what}"
    if kind == "zero":
        a = rng.randrange(len(data))
        b = min(len(data), a + rng.choice((1, 8, 64, 4096)))
        path.write_bytes(data[:a] + bytes(b - a) + data[b:])
        return f"zeroed bytes {a}..{b}"
    if kind == "append":
        extra = rng.randbytes(rng.choice((1, 100, 10000)))
        path.write_bytes(data + extra)
        return f"{len(extra)} bytes appended"
    if kind in ("huge length", "short length"):
        length = struct.unpack_from("<Q", data, LENGTH_AT)[0]
        value = rng.choice((2**64 - 1, 2**40, 1 << 29)) if kind == "huge length" else rng.randrange(length)
        out = bytearray(data)
        struct.pack_into("<Q", out, LENGTH_AT, value)
        path.write_bytes(out)
        return f"declared payload length {value} (real {length})"
    if kind == "other entry":
        path.write_bytes(other.data)
        return f"the entry of {other.name}"
    if kind == "garbage":
        n = rng.choice((10, 84, 85, 5000))
        path.write_bytes(rng.randbytes(n))
        return f"{n} random bytes"
    if kind == "empty":
        path.write_bytes(b"")
        return "empty file"
    if kind == "other format":
        out = bytearray(data)
        struct.pack_into("<I", out, 8, rng.choice((0, 1, 2, 4, 2**32 - 1)))
        path.write_bytes(out)
        return f"format field {struct.unpack_from('<I', out, 8)[0]}"
    if kind == "fifo":
        os.mkfifo(path)
        return "a FIFO"
    if kind == "directory":
        (path / "inside").mkdir(parents=True)
        return "a directory"
    if kind == "link to /dev/zero":
        path.symlink_to("/dev/zero")
        return "a symbolic link to /dev/zero"
    if kind == "link to a directory":
        path.symlink_to(work)
        return "a symbolic link to a directory"
    path.symlink_to(path.parent / "nowhere")
    return "a dangling symbolic link"


def forged_damage(g: Good, other: Good, rng: random.Random, path: Path) -> tuple[str, bool]:
    """Damage the object code and reseal the entry; returns (what was done, whether the damage may
    be structurally valid and so undetectable)."""
    start, end = g.obj_range
    obj = g.data[start:end]
    kind = rng.choice(["flip structure", "flip structure", "set field", "set field", "swap section headers",
                       "zero section headers", "truncate object", "append to object", "other object",
                       "not ELF", "flip machine code", "kernel symbol"])
    maybe_valid = False
    if kind in ("flip structure", "set field"):
        what, rstart, rsize = rng.choice(g.regions)
        if kind == "flip structure":
            obj, done = flip(obj, rng, rstart, rsize, rng.choice((1, 1, 2, 4)))
        else:
            obj, done = set_field(obj, rng, rstart, rsize)
        desc = f"{what}: {done}"
        maybe_valid = True                     # e.g. a relocation addend, a local symbol's value
    elif kind == "swap section headers":
        shoff, shnum = struct.unpack_from("<Q", obj, 40)[0], struct.unpack_from("<H", obj, 60)[0]
        a, b = rng.sample(range(shnum), 2)
        out = bytearray(obj)
        ha, hb = shoff + 64 * a, shoff + 64 * b
        out[ha:ha + 64], out[hb:hb + 64] = obj[hb:hb + 64], obj[ha:ha + 64]
        obj, desc = bytes(out), f"section headers {a} and {b} swapped"
        maybe_valid = True                     # two sections nothing refers to by index
    elif kind == "zero section headers":
        shoff = struct.unpack_from("<Q", obj, 40)[0]
        obj, desc = obj[:shoff] + bytes(len(obj) - shoff), "section header table zeroed"
    elif kind == "truncate object":
        n = rng.randrange(len(obj))
        obj, desc = obj[:n], f"object truncated to {n} of {len(obj)} bytes"
    elif kind == "append to object":
        obj, desc = obj + rng.randbytes(100), "100 bytes appended to the object"
        maybe_valid = True                     # bytes no header points at
    elif kind == "other object":
        obj, desc = other.data[other.obj_range[0]:other.obj_range[1]], f"the object code of {other.name}"
    elif kind == "not ELF":
        obj, desc = rng.randbytes(len(obj)), "random bytes for object code"
    elif kind == "flip machine code":
        cstart, csize = rng.choice(g.code)
        obj, done = flip(obj, rng, cstart, csize, 1)
        desc, maybe_valid = f"machine code: {done}", True
    else:
        def change(meta):
            symbols = list(meta["symbols"])
            symbols[0] = rng.choice((symbols[0] + "_", symbols[-1] + "x", ""))
            return {**meta, "symbols": symbols}
        path.write_bytes(reseal(g.data, obj, change))
        return "the first kernel's symbol changed in the entry's header", False
    path.write_bytes(reseal(g.data, obj))
    return f"forged: {desc}", maybe_valid


# -- one trial in a child process ----------------------------------------------------------------


def child(g: Good, cache: Path, out_fd: int) -> None:
    import rlxpy

    def say(**fields):
        os.write(out_fd, (json.dumps(fields) + "\n").encode())

    exe = rlxpy.compile(g.graph, g.params, target="llvm", cache=cache, threads=1)
    say(phase="compiled", status=exe.cache_status)
    out = exe(**g.inputs)
    err = max(float(np.max(np.abs(out[k] - v))) / (float(np.max(np.abs(v))) or 1.0) for k, v in g.expected.items())
    say(phase="ran", error=err)
    again = rlxpy.compile(g.graph, g.params, target="llvm", cache=cache, threads=1)
    say(phase="again", status=again.cache_status)


def run_child(g: Good, cache: Path, timeout: float) -> tuple[list[dict], str]:
    """The child's reports and how it ended: "exit 0", "exit N", "signal NAME" or "timeout"."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                             # the child
        os.close(r)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)                                  # warnings of unwritable caches, etc.
        # a reader of /dev/zero must hit a wall, not the machine's memory
        resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))
        code = 0
        try:
            child(g, cache, w)
        except BaseException as e:                           # noqa: BLE001 - reported to the parent
            os.write(w, (json.dumps({"phase": "error", "error": f"{type(e).__name__}: {e}"}) + "\n").encode())
            code = 3
        os._exit(code)
    os.close(w)
    chunks, deadline, ended = [], time.monotonic() + timeout, None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            os.kill(pid, signal.SIGKILL)
            ended = "timeout"
            break
        ready, _, _ = select.select([r], [], [], left)
        if ready:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if ended is None:
        ended = (f"signal {signal.Signals(-os.waitstatus_to_exitcode(status)).name}"
                 if os.WIFSIGNALED(status) else f"exit {os.waitstatus_to_exitcode(status)}")
    reports = [json.loads(line) for line in b"".join(chunks).decode().splitlines() if line.strip()]
    return reports, ended


def judge(reports: list[dict], ended: str, maybe_valid: bool) -> tuple[str, str]:
    """(outcome, detail): outcome is "caught", "undetectable forgery: ..." or "FAILURE"."""
    by = {r["phase"]: r for r in reports}
    if "compiled" not in by:
        why = by.get("error", {}).get("error", ended)
        return "FAILURE", f"compile did not return ({why})"
    status = by["compiled"]["status"]
    if status == "hit":
        if not maybe_valid:
            return "FAILURE", "a damaged entry was a hit"
        if "ran" not in by:
            return "undetectable forgery: crashed when run", ended
        right = by["ran"]["error"] < 1e-5
        return f"undetectable forgery: {'right' if right else 'wrong'} result", f"error {by['ran']['error']:.2g}"
    if not (status == "miss" or (status.startswith("corrupt (") and status.endswith("), recompiled"))):
        return "FAILURE", f"status {status!r}"
    if "ran" not in by:
        return "FAILURE", f"the recompiled code did not run ({ended})"
    if by["ran"]["error"] >= 1e-5:
        return "FAILURE", f"wrong result after recompiling (error {by['ran']['error']:.2g})"
    if "again" not in by or ended != "exit 0":
        return "FAILURE", f"the second compile did not finish ({ended})"
    again = by["again"]["status"]
    if again != "hit" and again != status:
        return "FAILURE", f"second compile: {again!r}"
    return "caught", status


def prepare(trial: int, goods: list[Good], rng: random.Random, work: Path) -> tuple[Good, Path, str, bool]:
    """A cache directory holding one damaged entry: (its graph, the directory, the damage, whether the
    damage may leave a valid structure). Damage that happens to change nothing is drawn again."""
    g, other = goods[trial % len(goods)], goods[(trial + 1) % len(goods)]
    cache = work / f"trial{trial}"
    while True:
        shutil.rmtree(cache, ignore_errors=True)
        (cache / "llvm").mkdir(parents=True)
        path = cache / "llvm" / g.filename
        if rng.random() < 0.5:
            what, maybe_valid = file_damage(g, other, rng, path, work), False
        else:
            what, maybe_valid = forged_damage(g, other, rng, path)
        if not (path.is_file() and not path.is_symlink() and path.read_bytes() == g.data):
            return g, cache, what, maybe_valid


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="how long to fuzz")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds a trial may take before it is a hang")
    ap.add_argument("--verbose", action="store_true", help="print every trial")
    ap.add_argument("--replay", type=int, metavar="TRIAL",
                    help="run only this trial of --seed and keep its damaged entry as fuzz-trial-TRIAL.rlxobj")
    args = ap.parse_args(argv)
    if args.seconds <= 0 or args.timeout <= 0:
        ap.error("--seconds and --timeout must be positive")

    work = Path(tempfile.mkdtemp(prefix="rlxpy-fuzz-"))
    try:
        goods = good_entries(work)
        print(f"good entries: {', '.join(f'{g.name} ({len(g.data)} bytes)' for g in goods)}", flush=True)
        rng = random.Random(args.seed)
        outcomes: dict[str, int] = {}
        failures = []
        start, trial = time.monotonic(), 0
        while time.monotonic() - start < args.seconds if args.replay is None else trial <= args.replay:
            g, cache, what, maybe_valid = prepare(trial, goods, rng, work)
            if args.replay is not None and trial < args.replay:
                shutil.rmtree(cache)
                trial += 1
                continue
            if args.replay is not None:
                kept = Path(f"fuzz-trial-{trial}.rlxobj")
                entry = cache / "llvm" / g.filename
                if entry.is_file() and not entry.is_symlink():
                    shutil.copyfile(entry, kept)
                    print(f"the damaged entry is kept as {kept}")
            reports, ended = run_child(g, cache, args.timeout)
            outcome, detail = judge(reports, ended, maybe_valid)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            line = f"trial {trial} ({g.name}): {what} -> {outcome}: {detail}"
            if outcome == "FAILURE":
                failures.append(line)
                print(line, flush=True)
            elif args.verbose or args.replay is not None:
                print(line, flush=True)
            if args.replay is not None:
                print(f"  child reports: {reports}; ended: {ended}")
            shutil.rmtree(cache, ignore_errors=True)
            trial += 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{trial} trials in {time.monotonic() - start:.0f} s (seed {args.seed}):")
    for outcome, n in sorted(outcomes.items()):
        print(f"  {n:5d}  {outcome}")
    if failures:
        print(f"{len(failures)} FAILURES (each reproduces with --seed {args.seed} --replay TRIAL)")
        return 1
    print("no failures: every damaged entry was caught or was a structurally valid forgery")
    return 0


if __name__ == "__main__":
    sys.exit(main())
