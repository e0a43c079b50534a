"""The pass manager's guarantees: verify-each names the pass, a pass that raises leaves a
reproducer that replays, the bisect limit skips and says so, instruments see every application."""

import io
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from rlxpy import GraphBuilder, PassError
from rlxpy.cli import main
from rlxpy.ir import Node
from rlxpy.ir.textio import load_graph, save_graph
from rlxpy.passes import PASSES, Instrument, Pass, PassManager, register


def graph():
    b = GraphBuilder("g")
    x = b.input("x", (3, 4))
    w = b.const(np.arange(1, 9, dtype=np.float32).reshape(4, 2))
    b.output("y", b.scale(b.matmul(x, b.scale(w, factor=2.0)), factor=0.5))
    return b.build()


@dataclass(frozen=True)
class BreaksTypes(Pass):
    """Declares a wrong result type on every scale: the verifier must catch it after this pass."""
    name: ClassVar[str] = "test-breaks-types"

    def run(self, g, ctx):
        return g.with_nodes([n.with_(type=n.type.__class__((7,))) if n.op == "scale" else n for n in g.nodes])


@dataclass(frozen=True)
class Raises(Pass):
    name: ClassVar[str] = "test-raises"
    when: str = "always"

    def run(self, g, ctx):
        raise ZeroDivisionError("planted")


@pytest.fixture
def planted(monkeypatch):
    for cls in (BreaksTypes, Raises):
        monkeypatch.setitem(PASSES, cls.name, cls)


def test_verify_each_names_the_pass(planted, tmp_path):
    pm = PassManager("fold-constants,test-breaks-types,dce", reproducer_dir=tmp_path)
    with pytest.raises(PassError) as e:
        pm.run(graph())
    message = str(e.value)
    assert message.startswith("pass 'test-breaks-types' (application 2) produced an invalid graph: node %")
    assert "result type mismatch: declared tensor<7xf32>" in message
    assert f"reproducer: {tmp_path / 'reproducer-test-breaks-types.rlx'}" in message
    # without verify-each the broken graph goes through
    broken = PassManager("test-breaks-types", verify_each=False).run(graph())
    assert broken.of_op("scale")[0].type.shape == (7,)


def test_a_pass_that_raises_leaves_a_reproducer_that_replays(planted, tmp_path, capsys):
    pm = PassManager("fold-constants,test-raises", reproducer_dir=tmp_path)
    with pytest.raises(PassError, match=r"pass 'test-raises' \(application 2\) failed: ZeroDivisionError: planted"):
        pm.run(graph())
    path = tmp_path / "reproducer-test-raises.rlx"
    text = path.read_text()
    assert text.startswith("// rlxpy reproducer: pass 'test-raises' raised ZeroDivisionError: planted\n")
    assert "// replay: rlxpy opt reproducer-test-raises.rlx -p 'test-raises'" in text
    assert "// full pipeline: fold-constants,test-raises" in text
    # the reproducer holds the IR the failing pass was given: after fold-constants
    replayed = load_graph(path)
    assert replayed.of_op("const")[-1].origin == "fold-constants"
    assert main(["opt", str(path), "-p", "test-raises", "--reproducer-dir", str(tmp_path / "again")]) == 2
    assert "failed: ZeroDivisionError: planted" in capsys.readouterr().err


def test_bisect_limit_skips_and_reports():
    out = io.StringIO()
    pm = PassManager("fold-constants,fuse-epilogue,cse,dce", opt_bisect_limit=1, stream=out)
    result = pm.run(graph())
    assert [a.ran for a in pm.log.applications] == [True, False, False, False]
    assert out.getvalue().splitlines() == [
        "BISECT: running pass (1) fold-constants", "BISECT: NOT running pass (2) fuse-epilogue",
        "BISECT: NOT running pass (3) cse", "BISECT: NOT running pass (4) dce"]
    assert result.of_op("matmul") and not result.of_op("fused_matmul")
    assert PassManager("default", opt_bisect_limit=0, stream=io.StringIO()).run(graph()) is not None


def test_instruments_see_every_application_with_change_flags():
    seen = []

    class Spy(Instrument):
        def before_pass(self, p, index, g):
            seen.append(("before", index, p.name))

        def after_pass(self, p, index, before, after, changed, seconds):
            seen.append(("after", index, p.name, changed))

    pm = PassManager("fold-constants,cse,fold-constants,dce", instruments=[Spy()])
    pm.run(graph())
    assert seen == [("before", 1, "fold-constants"), ("after", 1, "fold-constants", True),
                    ("before", 2, "cse"), ("after", 2, "cse", False),
                    ("before", 3, "fold-constants"), ("after", 3, "fold-constants", False),
                    ("before", 4, "dce"), ("after", 4, "dce", True)]
    assert [a.changed for a in pm.log.applications] == [True, False, False, True]


def test_dump_dir_files_load_back(tmp_path):
    PassManager("default", dump_dir=tmp_path).run(graph())
    names = sorted(p.name for p in tmp_path.glob("*.rlx"))
    assert names == ["000-input.rlx", "001-fold-constants.rlx", "002-fuse-epilogue.rlx", "003-cse.rlx", "004-dce.rlx"]
    last = load_graph(tmp_path / "004-dce.rlx")
    assert [n.op for n in last] == ["input", "const", "fused_matmul"]


def test_debug_env_prints_pipeline_and_ir(monkeypatch):
    out = io.StringIO()
    monkeypatch.setenv("RLXPY_DEBUG", "2")
    PassManager("cse", stream=out).run(graph())
    text = out.getvalue()
    assert "rlxpy: pipeline 'cse' on @g (5 nodes)" in text
    assert "// -----// IR Dump After CommonSubexpressionElimination (cse) //----- //" in text


def test_opt_cli_reads_stdin_and_writes_pairs(tmp_path, monkeypatch, capsys):
    b = GraphBuilder("big")
    x = b.input("x", (4, 16))
    b.output("y", b.matmul(x, b.transpose(b.const(np.linspace(-1, 1, 256).reshape(16, 16)), perm=(1, 0))))
    save_graph(b.build(), tmp_path / "big.rlx")
    assert main(["opt", str(tmp_path / "big.rlx"), "-p", "default", "-o", str(tmp_path / "out.rlx")]) == 0
    out = load_graph(tmp_path / "out.rlx")
    assert (tmp_path / "out.safetensors").exists()
    assert [n.op for n in out] == ["input", "const", "matmul"]
    monkeypatch.setattr("sys.stdin", io.StringIO((tmp_path / "out.rlx").read_text()))
    assert main(["opt", "-", "-p", "cse"]) == 2           # stdin has no safetensors beside it
    assert "constant @" in capsys.readouterr().err
    small = 'graph @s {\n  %x = input {name = "x"} : tensor<2xf32>\n  %y = scale(%x) {factor = 2} : tensor<2xf32>\n  output @y = %y\n}\n'
    monkeypatch.setattr("sys.stdin", io.StringIO(small))
    assert main(["opt", "-", "-p", "cse"]) == 0
    assert "%y = scale(%x) {factor = 2.0} : tensor<2xf32>" in capsys.readouterr().out
    assert main(["opt", str(tmp_path / "nope.rlx")]) == 2
    assert f"graph file {tmp_path / 'nope.rlx'}: not found" in capsys.readouterr().err
    assert main(["opt"]) == 2
    assert "missing IN.rlx" in capsys.readouterr().err
