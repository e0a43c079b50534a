"""Pass options have declared ranges, checked from pipeline strings and from Python alike; the
print-IR instruments refuse pass names that do not exist instead of printing nothing."""

from dataclasses import dataclass
from typing import ClassVar

import pytest

from rlxpy import PassError
from rlxpy.cli import main
from rlxpy.cli.opt import list_passes
from rlxpy.passes import PASSES, Pass, PassManager, option
from rlxpy.passes.fold_constants import FoldConstants

GRAPH = """graph @g {
  %x = input {name = "x"} : tensor<2xf32>
  %y = scale(%x) {factor = 2.0} : tensor<2xf32>
  output @y = %y
}
"""


@dataclass(frozen=True)
class Ranged(Pass):
    name: ClassVar[str] = "test-ranged"
    lanes: int = option(8, min=1, max=16)
    ratio: float = option(0.5, min=0.0, max=1.0)
    mode: str = option("fast", choices=("fast", "exact"))
    limit: int = option(-1, max=0)

    def run(self, g, ctx):
        return g


@pytest.fixture
def ranged(monkeypatch):
    monkeypatch.setitem(PASSES, Ranged.name, Ranged)


@pytest.mark.parametrize("pipeline, message", [
    ("fold-constants{max-elements=-1}", "pass 'fold-constants': option 'max-elements' = -1 is out of range: expected an integer >= 0"),
    ("test-ranged{lanes=0}", "pass 'test-ranged': option 'lanes' = 0 is out of range: expected an integer in 1..16"),
    ("test-ranged{lanes=17}", "option 'lanes' = 17 is out of range: expected an integer in 1..16"),
    ("test-ranged{ratio=1.5}", "option 'ratio' = 1.5 is out of range: expected a number in 0.0..1.0"),
    ("test-ranged{mode=slow}", "option 'mode' = slow is out of range: expected one of fast, exact"),
    ("test-ranged{limit=3}", "option 'limit' = 3 is out of range: expected an integer <= 0"),
])
def test_out_of_range_in_a_pipeline(ranged, pipeline, message):
    with pytest.raises(PassError) as e:
        PassManager(pipeline)
    assert str(e.value).startswith(f"pass '{pipeline.split('{')[0]}': ") and str(e.value).endswith(message)


def test_in_range_values_are_accepted(ranged):
    pm = PassManager("fold-constants{max-elements=0},test-ranged{lanes=16 ratio=0 mode=exact limit=-5}")
    assert str(pm) == "fold-constants{max-elements=0},test-ranged{lanes=16 ratio=0.0 mode=exact limit=-5}"


@pytest.mark.parametrize("kwargs, message", [
    ({"lanes": 0}, "option 'lanes' = 0 is out of range: expected an integer in 1..16"),
    ({"lanes": True}, "option 'lanes' expects an integer, got True"),
    ({"lanes": "8"}, "option 'lanes' expects an integer, got '8'"),
    ({"ratio": -0.25}, "option 'ratio' = -0.25 is out of range"),
    ({"mode": "slow"}, "option 'mode' = slow is out of range: expected one of fast, exact"),
])
def test_out_of_range_from_python(kwargs, message):
    with pytest.raises(PassError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Ranged(**kwargs)


def test_fold_constants_from_python():
    with pytest.raises(PassError, match=r"option 'max-elements' = -1 is out of range: expected an integer >= 0"):
        FoldConstants(max_elements=-1)
    assert FoldConstants(max_elements=10).max_elements == 10


def test_list_passes_shows_the_ranges(ranged):
    text = list_passes()
    assert "max-elements: int = 268435456 (>= 0)" in text
    assert "lanes: int = 8 (1..16)" in text and "mode: str = fast (one of fast, exact)" in text
    assert "transpose: bool = true\n" in text                # no range: nothing added


@pytest.mark.parametrize("option_name", ["print_ir_after", "print_ir_before"])
def test_unknown_print_ir_pass_is_an_error(option_name):
    with pytest.raises(PassError, match=f"^{option_name.replace('_', '-')}: unknown pass 'nope'; known passes: "
                                        "cse, dce, fold-constants, fuse-epilogue \\(or all\\)$"):
        PassManager("cse", **{option_name: "cse,nope"})
    with pytest.raises(PassError, match="unknown pass 'nope'"):
        PassManager("cse", **{option_name: ["nope"]})


@pytest.mark.parametrize("flag", ["--print-ir-after", "--print-ir-before"])
def test_cli_unknown_print_ir_pass(tmp_path, capsys, flag):
    (tmp_path / "g.rlx").write_text(GRAPH)
    assert main(["opt", str(tmp_path / "g.rlx"), f"{flag}=nope"]) == 2
    err = capsys.readouterr().err
    assert err == (f"rlxpy opt: error: {flag[2:]}: unknown pass 'nope'; known passes: cse, dce, fold-constants, "
                   "fuse-epilogue (or all)\n")


def test_cli_known_print_ir_pass_prints(tmp_path, capsys):
    (tmp_path / "g.rlx").write_text(GRAPH)
    assert main(["opt", str(tmp_path / "g.rlx"), "--print-ir-after=cse", "--print-ir-before", "dce,cse"]) == 0
    err = capsys.readouterr().err
    assert "IR Dump After CommonSubexpressionElimination (cse)" in err
    assert "IR Dump Before CommonSubexpressionElimination (cse)" in err and "IR Dump Before DeadCodeElimination (dce)" in err
    assert "IR Dump After DeadCodeElimination (dce)" not in err


def test_cli_out_of_range_option(tmp_path, capsys):
    (tmp_path / "g.rlx").write_text(GRAPH)
    assert main(["opt", str(tmp_path / "g.rlx"), "-p", "fold-constants{max-elements=-1}"]) == 2
    assert capsys.readouterr().err == ("rlxpy opt: error: pass 'fold-constants': option 'max-elements' = -1 is "
                                       "out of range: expected an integer >= 0\n")
