"""`rlxpy opt` on stdout: text that parses back on its own whenever it goes to a pipe or a file
(constants in the resources section), handles and a note on a terminal, `--consts` to choose."""

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rlxpy import load_graph, parse_graph, print_graph, save_graph
from rlxpy.cli import main
from rlxpy.interp import evaluate
from rlxpy.models.sam2 import FpnNeckConfig, build_fpn_neck_ir
from rlxpy.params import bind_params
from rlxpy.passes import PassManager

BIN = Path(sys.executable).parent
CFG = FpnNeckConfig.for_hiera("tiny", image_size=(64, 96), fuse_type="avg", top_down_levels=(1, 2, 3))


@pytest.fixture
def neck(tmp_path, rng):
    """The neck with random weights bound (so its .rlx has a safetensors sidecar)."""
    graph = build_fpn_neck_ir(CFG)
    params = {k: rng.standard_normal(t.shape).astype(np.float32) for k, t in graph.param_types.items()}
    graph = bind_params(graph, params)
    save_graph(graph, tmp_path / "neck.rlx")
    assert (tmp_path / "neck.safetensors").exists()
    return tmp_path / "neck.rlx", graph


def run_opt(argv, capsys, monkeypatch, stdin: str | None = None):
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(["opt", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out, err


def test_opt_piped_into_opt_on_the_neck(neck, capsys, monkeypatch, rng):
    path, graph = neck
    first, err = run_opt([str(path)], capsys, monkeypatch)     # stdout is captured: not a terminal
    assert err == "" and "\nresources {\n" in first
    assert "%pos3 = const @pos3" in first and '\n  @pos3 = "' in first
    second, err = run_opt(["-", "-p", "cse,dce"], capsys, monkeypatch, stdin=first)
    assert err == ""
    assert print_graph(parse_graph(first)) == print_graph(PassManager("default").run(graph))
    assert print_graph(parse_graph(second), consts="resources") + "\n" == second
    inputs = {f"x{i}": rng.standard_normal(CFG.input_shape(i)).astype(np.float32) for i in range(4)}
    expected, got = evaluate(graph, inputs), evaluate(parse_graph(second), inputs)
    for k in expected:
        np.testing.assert_allclose(got[k], expected[k], rtol=1e-5, atol=1e-5 * np.abs(expected[k]).max(), err_msg=k)


def test_opt_pipe_and_redirect_between_processes(neck, tmp_path):
    path, graph = neck
    env = {**os.environ, "PATH": str(BIN) + os.pathsep + os.environ.get("PATH", "")}
    env.pop("RLXPY_TRACEBACK", None)
    done = subprocess.run(["bash", "-o", "pipefail", "-c", f"rlxpy opt '{path}' | rlxpy opt - -p cse > out.rlx"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert not (tmp_path / "out.safetensors").exists()          # the text holds everything
    loaded = load_graph(tmp_path / "out.rlx")
    assert print_graph(loaded) == print_graph(PassManager("default").run(graph))


def test_opt_on_a_terminal_shows_handles_and_says_how_to_keep_them(neck):
    """A real terminal (a pty) on stdout; the note goes to stderr."""
    path, graph = neck
    master, slave = os.openpty()
    env = {k: v for k, v in os.environ.items() if k != "RLXPY_TRACEBACK"}
    proc = subprocess.Popen([str(BIN / "rlxpy"), "opt", str(path)], stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 1 << 16)
        except OSError:               # EIO: the process closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0, err
    out = b"".join(chunks).decode().replace("\r\n", "\n")
    assert "resources {" not in out and "%pos3 = const @pos3" in out
    handles = [n for n in PassManager("default").run(graph).nodes if n.op == "const" and n.value.size > 8]
    size = sum(n.value.nbytes for n in handles)
    assert err == (f"rlxpy opt: note: {len(handles)} constants ({size / 1e6:.3g} MB) were shown by handle only; "
                   "to keep them, save with -o FILE.rlx, pipe or redirect the output, or pass --consts resources\n")


def test_consts_option_on_stdout_and_with_output(neck, tmp_path, capsys, monkeypatch):
    path, graph = neck
    monkeypatch.setattr("sys.stdout.isatty", lambda: True, raising=False)
    out, err = run_opt([str(path), "--consts", "resources"], capsys, monkeypatch)
    assert "\nresources {\n" in out and err == ""              # asked for: no note
    out, err = run_opt([str(path)], capsys, monkeypatch)
    assert "resources {" not in out and "rlxpy opt: note: " in err
    monkeypatch.undo()
    out, err = run_opt([str(path), "--consts", "handles"], capsys, monkeypatch)
    assert "resources {" not in out and err == ""              # asked for: no note, even on a pipe
    run_opt([str(path), "-o", str(tmp_path / "one.rlx"), "--consts", "resources"], capsys, monkeypatch)
    assert not (tmp_path / "one.safetensors").exists() and "\nresources {\n" in (tmp_path / "one.rlx").read_text()
    for mode in ("auto", "handles"):
        run_opt([str(path), "-o", str(tmp_path / f"{mode}.rlx"), "--consts", mode], capsys, monkeypatch)
        assert (tmp_path / f"{mode}.safetensors").exists()
        assert "resources {" not in (tmp_path / f"{mode}.rlx").read_text()
    want = print_graph(PassManager("default").run(graph))
    for name in ("one", "auto", "handles"):
        assert print_graph(load_graph(tmp_path / f"{name}.rlx")) == want, name
    assert main(["opt", str(path), "--consts", "inline"]) == 2
    assert "argument --consts: invalid choice: 'inline'" in capsys.readouterr().err


def test_no_note_without_handle_constants(tmp_path, capsys, monkeypatch):
    text = 'graph @s {\n  %x = input {name = "x"} : tensor<2xf32>\n  %y = scale(%x) {factor = 2.0} : tensor<2xf32>\n  output @y = %y\n}\n'
    monkeypatch.setattr("sys.stdout.isatty", lambda: True, raising=False)
    out, err = run_opt(["-"], capsys, monkeypatch, stdin=text)
    assert out == text + "\n" and err == ""


def test_stdin_without_resources_says_how_to_get_them(neck, capsys, monkeypatch):
    path, graph = neck
    monkeypatch.setattr("sys.stdin", io.StringIO(print_graph(graph)))      # handles only
    assert main(["opt", "-"]) == 2
    assert capsys.readouterr().err == (
        "rlxpy opt: error: <stdin>:6:15: node %w3 (const): missing constant @w3: no safetensors file comes with "
        "stdin (print the IR with its resources: rlxpy opt --consts resources, or read the .rlx file itself)\n")
