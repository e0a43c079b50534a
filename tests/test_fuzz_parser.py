"""benchmarks/fuzz_parser.py: its core loop runs clean for a couple of seconds, and its checks
catch what they are there to catch (so the fuzzer cannot rot into one that passes anything)."""

import importlib.util
import random
import re
import sys
from pathlib import Path

import pytest

from rlxpy import GraphBuilder, ParseError, RlxError, parse_graph

PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "fuzz_parser.py"


@pytest.fixture(scope="module")
def fuzzer():
    spec = importlib.util.spec_from_file_location("fuzz_parser", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module           # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture(scope="module")
def texts(fuzzer):
    return fuzzer.corpus(seed=0, random_graphs=3)


def test_core_loop_for_two_seconds(fuzzer, texts):
    stats = fuzzer.fuzz(2.0, seed=0, texts=texts)
    assert stats.failure is None, stats.failure
    assert stats.tried > 50 and stats.ok > 0 and stats.errors > 0 and stats.ok + stats.errors == stats.tried
    assert stats.summary().startswith(f"fuzz_parser: {stats.tried} texts in ")


def test_the_corpus_parses(fuzzer, texts):
    outcomes = [fuzzer.check(t) for t in texts]
    assert all(o[0] != "fail" for o in outcomes), [o for o in outcomes if o[0] == "fail"]
    assert sum(o[0] == "ok" for o in outcomes) >= 3 + 2 + 8   # the necks, the random graphs, the golden files
    assert any("\nresources {\n" in t for t in texts)


def test_mutations_reach_the_promised_corners(fuzzer, texts):
    r = random.Random(5)
    mutants = [fuzzer.mutate(r.choice(texts), texts, r) for _ in range(800)]
    assert any(re.search(r"[0-9]{4301}", m) for m in mutants)          # past Python's int-string limit
    assert any("1x" * 65 in m for m in mutants)
    assert any("[" * 65 in m for m in mutants)
    assert any("\ud800" in m or "𝄞" in m for m in mutants)
    assert len(set(mutants)) > 700


def test_check_refuses_everything_but_a_graph_or_a_located_error(fuzzer):
    text = 'graph @g {\n  %x = input {name = "x"} : tensor<2xf32>\n  output @y = %x\n}\n'
    assert fuzzer.check(text) == ("ok", None)
    assert fuzzer.check(text.replace("tensor<2xf32>", "tensor<2xf33>")) == ("error", None)

    def raises(error):
        def parse(t):
            raise error
        return parse
    outcome, why = fuzzer.check(text, raises(ValueError("Exceeds the limit (4300 digits)")))
    assert outcome == "fail" and why.startswith("ValueError: Exceeds the limit")
    assert fuzzer.check(text, raises(RecursionError()))[0] == "fail"
    assert fuzzer.check(text, raises(RlxError("no location")))[0] == "fail"
    assert "past the end of the text" in fuzzer.check(text, raises(ParseError("x", 9, 1)))[1]
    assert "does not start with its location" in fuzzer.check(text, raises(ParseError("x", 1, 1, "f.rlx")))[1]
    assert fuzzer.check(text, raises(ParseError("x", 2, 5))) == ("error", None)
    b = GraphBuilder("other")
    b.output("z", b.input("z", (3,)))
    other = b.build()
    calls = []

    def flaky(t):                     # the second parse gives another graph: no round trip
        calls.append(t)
        return parse_graph(t) if len(calls) == 1 else other
    assert fuzzer.check(text, flaky) == ("fail", "the parsed graph does not round-trip: print -> parse -> print "
                                                 "changed the text")


def test_a_failure_stops_the_run_and_main_prints_the_input(fuzzer, texts, monkeypatch, capsys):
    def broken(t):
        if "scale" in t:
            raise IndexError("planted")
        return parse_graph(t)
    stats = fuzzer.fuzz(5.0, seed=1, parse=broken, texts=texts)
    assert stats.failure is not None and stats.failure[0].startswith("IndexError: planted")
    assert "scale" in stats.failure[1]
    monkeypatch.setattr(fuzzer, "parse_graph", broken)
    assert fuzzer.main(["--seconds", "5", "--seed", "1", "--no-linear"]) == 1
    out, err = capsys.readouterr()
    assert "fuzz_parser: FAILED: IndexError: planted" in err and "replay with --seed 1" in err
    assert "the input (" in err and "1 failure" in out


def test_linear_time_check(fuzzer):
    measured = fuzzer.measure_linear(40_000)
    assert [m[0] for m in measured] == list(fuzzer.large_inputs(1000))
    assert all(size > 5_000 and small > 0 and big > 0 for _, size, small, big in measured)
    verdict = fuzzer.linear_failures([("linear", 4000, 30.0, 33.0), ("quadratic", 4000, 30.0, 120.0),
                                      ("too short to judge", 4000, 1.0, 30.0)])
    assert len(verdict) == 1 and verdict[0].startswith("quadratic: 30.0 ns/B at 1000 bytes, 120.0 ns/B at 4000")
    for family, text in fuzzer.large_inputs(20_000).items():
        assert fuzzer.check(text)[0] != "fail", family
