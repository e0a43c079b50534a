"""Progress on stderr: shown when stderr is a terminal or --progress forces it, never otherwise
(pipes, captured logs), and turned off by --no-progress. (`rlxpy bench`: see test_bench.py.)"""

import io
import re
import sys

import numpy as np
import pytest

from rlxpy import GraphBuilder
from rlxpy.cli import main
from rlxpy.ir.textio import save_graph

BAR = re.compile(r"difftest: 100%\|.*\| 6/6 \[.*(graph/s|s/graph), 0 mismatches\]")
SMALL = ["--config", "tiny", "--image-size", "64"]


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_difftest_bar_with_progress_and_not_in_a_pipe(capsys):
    assert main(["difftest", "--count", "6", "--target", "interp", "--progress"]) == 0
    out, err = capsys.readouterr()
    assert BAR.search(err), err
    assert "difftest: 6 graphs" in out and "100%" not in out              # the bar stays off stdout
    assert main(["difftest", "--count", "6", "--target", "interp"]) == 0    # captured: not a terminal
    assert capsys.readouterr().err == ""


def test_a_terminal_gets_progress_unless_no_progress(monkeypatch, capsys):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["difftest", "--count", "6", "--target", "interp"]) == 0
    assert BAR.search(terminal.getvalue()), terminal.getvalue()
    terminal.seek(0)
    terminal.truncate()
    assert main(["difftest", "--count", "6", "--target", "interp", "--no-progress"]) == 0
    assert terminal.getvalue() == ""
    capsys.readouterr()


def test_fpn_neck_prints_each_stage_as_it_ends(capsys):
    assert main(["fpn-neck", *SMALL, "--progress"]) == 0
    out, err = capsys.readouterr()
    stages = [line.split()[2] for line in err.splitlines()]
    assert stages == ["build", "weights", "compile", "run"], err
    assert all(re.fullmatch(r"rlxpy fpn-neck: [a-zA-Z ]{9}\s+\d+\.\d ms", line) for line in err.splitlines()), err
    assert "stages" in out                                                   # the summary is unchanged
    assert main(["fpn-neck", *SMALL]) == 0
    assert capsys.readouterr().err == ""


def test_run_prints_each_stage_as_it_ends(tmp_path, capsys):
    b = GraphBuilder("g")
    b.output("y", b.scale(b.input("x", (3, 5)), factor=2.0))
    save_graph(b.build(), tmp_path / "g.rlx")
    assert main(["run", str(tmp_path / "g.rlx"), "--progress"]) == 0
    assert [line.split()[2] for line in capsys.readouterr().err.splitlines()] == ["load", "data", "compile", "run"]
    assert main(["run", str(tmp_path / "g.rlx")]) == 0
    assert capsys.readouterr().err == ""


@pytest.fixture
def failing_case(tmp_path):
    """A case the planted bias-dropping fusion of test_difftest gets wrong."""
    from test_difftest import FuseDropsBias
    from rlxpy.passes import PASSES
    PASSES[FuseDropsBias.name] = FuseDropsBias
    rng = np.random.default_rng(3)
    b = GraphBuilder("case")
    x = b.input("x", (2, 4, 6, 5))
    y = b.bias_add(b.matmul(x, b.const(rng.uniform(0.5, 1, (5, 7)).astype(np.float32))),
                   b.const(rng.uniform(0.5, 1, 7).astype(np.float32)))
    b.output("y", b.scale(b.transpose(y, perm=(0, 3, 1, 2)), factor=0.5))
    save_graph(b.build(), tmp_path / "case.rlx")
    yield tmp_path / "case.rlx"
    del PASSES[FuseDropsBias.name]


def test_reduce_shows_the_size_as_it_shrinks(failing_case, tmp_path, capsys):
    args = ["reduce", str(failing_case), "--pipeline", "fold-constants,test-fuse-drops-bias", "--target", "interp",
            "-o", str(tmp_path / "small.rlx")]
    assert main([*args, "--progress"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"reduce: \d+try \[.*, \d+ nodes, \d+ elements\]", err), err
    assert "reduce: drop" in err or "reduce: cut" in err or "reduce: shrink" in err   # the kept steps, as before
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "try/s" not in err and " elements]" not in err and err.startswith("reduce: ")
