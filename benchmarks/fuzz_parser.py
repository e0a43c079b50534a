"""Fuzz the textual IR parser for a bounded time.

    python benchmarks/fuzz_parser.py [--seconds 60] [--seed N] [--linear-bytes 4000000] [--no-linear]

Starts from valid texts (the SAM 2 neck at a small size, printed as built and after the default
pipeline with its constants in a resources section; every file under tests/filecheck; random
difftest graphs) and mutates them at the byte and token level: delete, duplicate and swap spans,
splice in spans of other texts, delete, duplicate, swap and replace tokens, truncate, and insert
huge numbers, deep nesting, long dimension lists, long strings and odd unicode. Every mutant is
parsed; the only acceptable outcomes are a graph (which must print and parse back to the same
text) or a `ParseError` (an `RlxError`) that carries its line and column and names them in its
message. Anything else (another exception, a bad location, a round trip that changes the text)
prints the input that did it and exits with status 1.

Then it checks that parse time grows linearly with the input: for each of a few families of very
large inputs (many nodes, one long line, long strings with escapes, a big dense literal, a big
resource, many comment lines, long numbers, long dimension lists, deep nesting) it times the parse
at two sizes, 4x apart, and fails when the time per byte of the larger is more than
`LINEAR_TOLERANCE` times that of the smaller (a quadratic parser gives 4x).

The last line is a summary: texts tried, how many parsed, how many were parse errors, the rate.
"""

from __future__ import annotations

import argparse
import base64
import random
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from rlxpy import ParseError, RlxError, parse_graph, print_graph  # noqa: E402

LINEAR_TOLERANCE = 2.0      # per-byte time of the 4x input over the 1x one; quadratic gives 4
OPS = ("matmul", "bias_add", "upsample_add", "scale", "transpose", "reshape", "pos_encoding", "fused_matmul",
       "input", "param", "const")
VOCABULARY = ("graph", "output", "const", "dense", "tensor", "resources", "loc", "true", "false", "inf", "nan",
              "=", ":", ",", "{", "}", "(", ")", "[", "]", "<", ">", "@x", "@", "%", "%0", "%x", '"s"', '"',
              "1", "-1", "0", "1.5", "-0.0", "1e39", "f32", "f16", "i64", "x", "2x3xf32", "//", "\n", *OPS)
ODD_CHARACTERS = ("é", "€", "𝄞", "\u0000", "\ud800", "\udfff", "\u202e", "\ufeff", "\u00a0", "\u2028", "\x85",
                  "\t", "\r", "\x0b", "\x0c", "\\", '"', "'", "%", "@", "x", "0")
_TOKENS = None              # compiled lazily: the fuzzer's own rough tokenizer


# -- the corpus --------------------------------------------------------------------------------


def corpus(seed: int = 0, random_graphs: int = 8) -> list[str]:
    """Valid (and a few invalid) texts to start from."""
    from rlxpy.difftest import seeded_case
    from rlxpy.models.sam2 import FpnNeckConfig, build_fpn_neck_ir
    from rlxpy.passes import PassManager
    cfg = FpnNeckConfig.for_hiera("tiny", image_size=(32, 32), fuse_type="avg", interp="bilinear",
                                  top_down_levels=(1, 2, 3))
    neck = build_fpn_neck_ir(cfg)
    texts = [print_graph(neck), print_graph(PassManager("default").run(neck), consts="resources")]
    texts += [p.read_text(encoding="utf-8") for p in sorted((ROOT / "tests" / "filecheck").rglob("*.rlx"))]
    texts += [print_graph(seeded_case(seed * 1000 + i).graph, consts="resources") for i in range(random_graphs)]
    return texts


# -- mutations ---------------------------------------------------------------------------------


def tokens(text: str) -> list[str]:
    global _TOKENS
    if _TOKENS is None:
        import re
        _TOKENS = re.compile(r'\s++|%[\w.$-]*+|@[\w.$-]*+|"[^"\\\n]*+(?:\\.[^"\\\n]*+)*+"|-?\d[\w.+-]*+|\w++|.',
                             re.DOTALL)
    return _TOKENS.findall(text)


def huge_number(r: random.Random) -> str:
    k = r.choice((20, 300, 4301, r.randint(1, 20_000)))
    return r.choice((
        "9" * k, "-" + "9" * k, "1e" + "9" * min(k, 30), "0." + "0" * k + "1", "1" * k + ".5", "0" * k + "7",
        str(2**63), str(-2**63 - 1), str(2**63 - 1), str(2**62), str(2**62 + 1), str(2**64 + 2), "1e39", "-1e-46",
        "1" + "0" * 20, "inf", "-inf", "nan", "-0",
    ))


def nesting(r: random.Random) -> str:
    k = r.choice((63, 64, 65, 66, r.randint(1, 100_000)))
    opener = r.choice(("[", "{", "(", "<", "tensor<", "dense<", "loc(", "[[", "%", "@"))
    return r.choice((opener * k, "[" * k + "1.0" + "]" * k, "[" * k + "]" * k))


def dims(r: random.Random) -> str:
    k = r.choice((63, 64, 65, 20_000, r.randint(1, 200_000)))
    unit = r.choice(("1x", "2x", "0x", "x", "1", "99999999999x"))
    return "tensor<" + unit * k + r.choice(("f32>", "f32", ">", "", "xf32>"))


def long_string(r: random.Random) -> str:
    k = r.randint(1, 200_000)
    body = r.choice(("a", "\\n", "\\\\", "\\u00e9", "é", "\\", "\\q", "\\ud800"))
    return '"' + body * k + r.choice(('"', "", "\n"))


def mutate(text: str, others: list[str], r: random.Random) -> str:
    for _ in range(r.choice((1, 1, 2, 3))):
        n = len(text)
        i, j = sorted((r.randint(0, n), r.randint(0, n)))
        if r.random() < 0.7:                      # spans short more often than long
            j = min(n, i + r.randint(0, 16))
        kind = r.randrange(15)
        if kind == 0:
            text = text[:i] + text[j:]
        elif kind == 1:
            text = text[:j] + text[i:j] * r.choice((1, 2, 100)) + text[j:]
        elif kind == 2 and n:
            k, m = sorted((r.randint(0, n), r.randint(0, n)))
            a, b = sorted(((i, j), (k, m)))
            if a[1] <= b[0]:
                text = text[:a[0]] + text[b[0]:b[1]] + text[a[1]:b[0]] + text[a[0]:a[1]] + text[b[1]:]
        elif kind == 3:
            other = r.choice(others)
            k = r.randint(0, len(other))
            text = text[:i] + other[k:k + r.randint(0, 200)] + text[j:]
        elif kind == 4:
            text = text[:i] + huge_number(r) + text[j:]
        elif kind == 5:
            text = text[:i] + nesting(r) + text[i:]
        elif kind == 6:
            start = text.find("tensor<", i)
            end = text.find(">", start)
            if start >= 0 and end >= 0:
                text = text[:start] + dims(r) + text[end + 1:]
        elif kind == 7:
            text = text[:i] + "".join(r.choice(ODD_CHARACTERS) for _ in range(r.randint(1, 4))) + text[i:]
        elif kind == 8:
            text = text[:i]
        elif kind == 9:
            text = text[:i] + long_string(r) + text[j:]
        else:                                     # token level
            toks = tokens(text)
            if not toks:
                continue
            t = r.randrange(len(toks))
            if kind == 10:
                del toks[t]
            elif kind == 11:
                toks.insert(t, toks[t])
            elif kind == 12 and t + 1 < len(toks):
                toks[t], toks[t + 1] = toks[t + 1], toks[t]
            elif kind == 13:
                toks[t] = r.choice(VOCABULARY)
            else:                                 # a number token made huge, or a name made long
                numbers = [k for k, tok in enumerate(toks) if tok[:1].isdigit() or tok[:2].startswith("-")]
                if numbers:
                    toks[r.choice(numbers)] = huge_number(r)
                else:
                    toks[t] = toks[t] * r.randint(2, 5000)
            text = "".join(toks)
    return text


# -- checking one text -------------------------------------------------------------------------


def check(text: str, parse: Callable[[str], object] | None = None) -> tuple[str, str | None]:
    """("ok", None) if `text` parses and round-trips, ("error", None) if it is refused with a
    located error, else ("fail", what went wrong)."""
    parse = parse or parse_graph
    try:
        graph = parse(text)
    except KeyboardInterrupt:
        raise
    except RlxError as e:           # ParseError, or any RlxError that carries a location
        line, column = getattr(e, "line", None), getattr(e, "column", None)
        if not (isinstance(line, int) and isinstance(column, int) and line >= 1 and column >= 1):
            return "fail", (f"{type(e).__name__} without a valid line and column ({line!r}, {column!r}): "
                            f"{str(e)[:500]}\n{traceback.format_exc()}")
        if line > text.count("\n") + 1:
            return "fail", f"error at line {line}, past the end of the text ({text.count(chr(10)) + 1} lines): {e}"
        if not str(e).startswith(f"{line}:{column}: "):
            return "fail", f"error message does not start with its location {line}:{column}: {str(e)[:500]}"
        return "error", None
    except BaseException as e:  # noqa: BLE001  (the point is to catch everything)
        return "fail", f"{type(e).__name__}: {str(e)[:500]}\n{traceback.format_exc()}"
    try:                                          # what parsed must print and parse back exactly
        printed = print_graph(graph, consts="resources")
        again = print_graph(parse(printed), consts="resources")
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001
        return "fail", (f"the parsed graph does not round-trip: {type(e).__name__}: {str(e)[:500]}\n"
                        f"{traceback.format_exc()}")
    if again != printed:
        return "fail", "the parsed graph does not round-trip: print -> parse -> print changed the text"
    return "ok", None


@dataclass
class Stats:
    tried: int = 0
    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    failure: tuple[str, str] | None = None     # (what went wrong, the input)
    linear: list[tuple[str, int, float, float]] = field(default_factory=list)   # family, bytes, ns/B small, big

    def summary(self) -> str:
        rate = self.tried / self.seconds if self.seconds else 0.0
        failed = 0 if self.failure is None else 1
        line = (f"fuzz_parser: {self.tried} texts in {self.seconds:.1f} s ({rate:.0f}/s): {self.ok} ok, "
                f"{self.errors} parse errors, {failed} failure{'' if failed == 1 else 's'}")
        if self.linear:
            worst = max(self.linear, key=lambda x: x[3] / x[2])
            line += (f"; linear: {len(self.linear)} families up to {max(x[1] for x in self.linear) / 1e6:.1f} MB, "
                     f"worst per-byte ratio {worst[3] / worst[2]:.2f} ({worst[0]})")
        return line


def fuzz(seconds: float, seed: int = 0, parse: Callable[[str], object] | None = None,
         texts: list[str] | None = None) -> Stats:
    """Mutate and parse for `seconds`; stop at the first failure. Every 20th text is a corpus text
    unchanged (they must stay fine too)."""
    r = random.Random(seed)
    texts = corpus(seed) if texts is None else texts
    stats = Stats()
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        text = mutate(r.choice(texts), texts, r) if stats.tried % 20 else r.choice(texts)
        outcome, problem = check(text, parse)
        stats.tried += 1
        if outcome == "fail":
            stats.failure = (problem, text)
            break
        stats.ok += outcome == "ok"
        stats.errors += outcome == "error"
    stats.seconds = time.perf_counter() - start
    return stats


# -- linear time -------------------------------------------------------------------------------


def large_inputs(n: int) -> dict[str, str]:
    """About `n` bytes of each family of very large input (a quarter of that for the families that
    cost microseconds a byte: nodes and dense literals)."""
    rng = np.random.default_rng(0)
    head = 'graph @g {\n  %x = input {name = "x"} : tensor<2x3xf32>\n'
    tail = "  output @y = %x\n}\n"
    node = "  %{i} = scale(%x) {{factor = 2.0}} : tensor<2x3xf32>\n"
    k = max(1, n // 4 // len(node.format(i=10**6)))
    nodes = "".join(node.format(i=i) for i in range(k))
    elements = max(1, n // 64)
    dense = ", ".join(f"{v!r}" for v in rng.standard_normal(elements).astype(np.float32).tolist())
    data = rng.standard_normal(max(1, n * 3 // 16)).astype("<f4")
    return {
        "many nodes": head + nodes + tail,
        "one long line": head + nodes.replace("\n", " ") + "\n" + tail,
        "long string with escapes": head.replace('"x"', '"' + "a\\n\\u00e9" * (n // 9) + '"', 1) + tail,
        "big dense literal": head + f"  %c = const dense<[{dense}]> : tensor<{elements}xf32>\n"
                             + tail.replace("%x", "%c"),
        "big resource": head + f"  %w = const @w : tensor<{data.size}xf32>\n" + tail.replace("%x", "%w")
                        + f'resources {{\n  @w = "{base64.b64encode(data.tobytes()).decode()}"\n}}\n',
        "many comment lines": "// a comment\n" * (n // 13) + head + tail,
        "long number": head + "  %s = scale(%x) {factor = 1." + "1" * n + "} : tensor<2x3xf32>\n" + tail,
        "long dimension list": head.replace("tensor<2x3xf32>", "tensor<" + "1x" * (n // 2) + "f32>") + tail,
        "deep nesting": head + "  %t = transpose(%x) {perm = " + "[" * n + "} : tensor<3x2xf32>\n" + tail,
    }


def parse_seconds(text: str, parse: Callable[[str], object], repeat: int = 2) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        try:
            parse(text)
        except RlxError:
            pass
        best = min(best, time.perf_counter() - start)
    return best


def linear_failures(measured: list[tuple[str, int, float, float]], tolerance: float = LINEAR_TOLERANCE) -> list[str]:
    """The families whose time per byte grew more than `tolerance` times from the small input to
    the 4x one (noise below 20 ns a byte on the small one is not judged: too short to time)."""
    return [f"{family}: {small:.1f} ns/B at {size // 4} bytes, {big:.1f} ns/B at {size} bytes "
            f"({big / small:.2f}x, more than {tolerance}x)"
            for family, size, small, big in measured if big > tolerance * max(small, 20.0)]


def measure_linear(size: int, parse: Callable[[str], object] | None = None) -> list[tuple[str, int, float, float]]:
    """(family, bytes of the large input, ns per byte small, ns per byte large) for each family."""
    parse = parse or parse_graph
    small, big = large_inputs(size // 4), large_inputs(size)
    out = []
    for family in small:
        ns_small = parse_seconds(small[family], parse) / len(small[family]) * 1e9
        ns_big = parse_seconds(big[family], parse) / len(big[family]) * 1e9
        out.append((family, len(big[family]), ns_small, ns_big))
    return out


# -- the command -------------------------------------------------------------------------------


def report_failure(problem: str, text: str) -> None:
    print(f"fuzz_parser: FAILED: {problem}", file=sys.stderr)
    if len(text) <= 20_000:
        print(f"fuzz_parser: the input ({len(text)} characters), as a Python literal:\n{text!r}", file=sys.stderr)
    else:
        with tempfile.NamedTemporaryFile("w", suffix=".rlx", prefix="fuzz-parser-", delete=False,
                                         encoding="utf-8", errors="surrogatepass") as f:
            f.write(text)
        print(f"fuzz_parser: the input ({len(text)} characters) is in {f.name}; it starts:\n{text[:2000]!r}",
              file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="how long to mutate and parse (default 60)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock, printed)")
    ap.add_argument("--linear-bytes", type=int, default=4_000_000,
                    help="size of the largest linear-time inputs (default 4000000)")
    ap.add_argument("--no-linear", action="store_true", help="skip the linear-time check")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time()) % 100_000
    print(f"fuzz_parser: seed {seed}, {args.seconds:g} s")
    stats = fuzz(args.seconds, seed)
    if stats.failure is not None:
        report_failure(*stats.failure)
        print(stats.summary())
        print(f"fuzz_parser: replay with --seed {seed}", file=sys.stderr)
        return 1
    if not args.no_linear:
        stats.linear = measure_linear(args.linear_bytes)
        for family, size, small, big in stats.linear:
            print(f"  {family:<26} {small:7.1f} ns/B at {size // 4:>9} B   {big:7.1f} ns/B at {size:>9} B")
        bad = linear_failures(stats.linear)
        if bad:
            print("fuzz_parser: FAILED: parse time is not linear:\n  " + "\n  ".join(bad), file=sys.stderr)
            print(stats.summary())
            return 1
    print(stats.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
