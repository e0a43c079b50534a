"""The pass manager's guarantees: verify-each names the pass, a pass that raises leaves a
reproducer that replays, the bisect limit skips and says so, instruments see every application."""

import io
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from rlxpy import GraphBuilder, PassError, RlxError
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


# -- how much --dump-dir writes ----------------------------------------------------------------------

def big_graph(rng):
    """A large const (80 KiB) that passes keep as the same array, and two small ones (10 and 1 KiB)."""
    b = GraphBuilder("big")
    x = b.input("x", (3, 128))
    big = b.const(rng.uniform(0.5, 1.5, (128, 160)).astype(np.float32))
    mid = b.const(rng.uniform(0.5, 1.5, (160, 16)).astype(np.float32))
    small = b.const(rng.uniform(0.5, 1.5, (16, 16)).astype(np.float32))
    b.output("y", b.matmul(b.matmul(b.matmul(x, big), mid), small))
    return b.build()


def sidecar(path):
    from safetensors.numpy import load_file
    return {k: v.shape for k, v in load_file(str(path)).items()} if path.exists() else {}


@pytest.mark.parametrize("mode", ["small", "all", "none"])
def test_dump_constants_modes(tmp_path, rng, mode):
    from rlxpy.interp import evaluate
    g = big_graph(rng)
    out = io.StringIO()
    PassManager("cse,dce,cse", dump_dir=tmp_path, dump_constants=mode, stream=out).run(g)
    dumps = sorted(tmp_path.glob("*.rlx"))
    assert [p.stem for p in dumps] == ["000-input", "001-cse", "002-dce", "003-cse"]
    tensors = [sidecar(p.with_suffix(".safetensors")) for p in dumps]
    large = [name for name, shape in tensors[0].items() if shape == (128, 160)] if mode != "none" else []
    files = sorted(tmp_path.iterdir())
    total = sum(p.stat().st_size for p in files)
    amount = f"{total / 2**20:.1f} MiB" if total >= 2**20 else f"{total / 2**10:.1f} KiB"
    assert out.getvalue() == (f"rlxpy: wrote 4 IR dumps to {tmp_path}/: {len(files)} files, {amount} "
                              f"(dump_constants='{mode}')\n")
    x = rng.standard_normal((3, 128)).astype(np.float32)
    if mode == "none":
        assert tensors == [{}] * 4
        for p in dumps:
            assert p.read_text().startswith("// rlxpy-consts: none written (dump_constants='none'): the data of 3 constant(s)")
        with pytest.raises(RlxError, match=r"missing constant @\w+: 002-dce.rlx was dumped without constant data"):
            load_graph(dumps[2])
        return
    assert len(large) == 1
    for t in tensors[1:]:
        assert (large[0] in t) == (mode == "all")          # "small": the large one only in the first dump
        assert sum(shape == (160, 16) for shape in t.values()) == 1 and (16, 16) in t.values()   # small ones always
    later = dumps[3].read_text()
    assert ("// rlxpy-consts-in: 000-input.safetensors {\"%s\": \"%s\"}" % (large[0], large[0]) in later) == (mode == "small")
    for p in dumps:                                         # every dump loads, and computes what the graph does
        np.testing.assert_array_equal(evaluate(load_graph(p), {"x": x})["y"], evaluate(g, {"x": x})["y"])


def test_a_dump_whose_earlier_file_is_gone_names_it(tmp_path, rng):
    PassManager("cse,dce", dump_dir=tmp_path, stream=io.StringIO()).run(big_graph(rng))
    (tmp_path / "000-input.safetensors").unlink()
    with pytest.raises(RlxError, match=r"002-dce.rlx:2: the data of constant @\w+ is in .*000-input.safetensors "
                                       r"\(written by an earlier dump of the same run\), which does not exist"):
        load_graph(tmp_path / "002-dce.rlx")


def test_dump_constants_options_are_checked(tmp_path, capsys, rng):
    import rlxpy
    with pytest.raises(PassError, match="dump_constants must be one of 'none', 'small', 'all', got 'some'"):
        PassManager("cse", dump_dir=tmp_path, dump_constants="some")
    with pytest.raises(PassError, match="dump_constants='none' applies only with dump_dir"):
        PassManager("cse", dump_constants="none")
    g = big_graph(rng)
    rlxpy.compile(g, dump_dir=tmp_path / "c", dump_constants="none")
    assert not list((tmp_path / "c").glob("*.safetensors")) and len(list((tmp_path / "c").glob("*.rlx"))) == 5
    assert "rlxpy: wrote 5 IR dumps to" in capsys.readouterr().err
    save_graph(g, tmp_path / "g.rlx")
    assert main(["opt", str(tmp_path / "g.rlx"), "--dump-constants", "all"]) == 2
    assert capsys.readouterr().err == "rlxpy opt: error: --dump-constants applies with --dump-dir only\n"
    assert main(["opt", str(tmp_path / "g.rlx"), "--dump-dir", str(tmp_path / "d"), "--dump-constants", "none"]) == 0
    assert f"rlxpy: wrote 5 IR dumps to {tmp_path / 'd'}/: 5 files" in capsys.readouterr().err
