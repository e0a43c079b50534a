"""Hardening of the command line: every mistake below is one line `rlxpy <cmd>: error: ...` with exit
status 2, found before any work, saying what was expected."""

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import rlxpy
from rlxpy import OptionError
from rlxpy.cli import main
from rlxpy.ir import GraphBuilder
from rlxpy.ir.textio import save_graph
from rlxpy.models.sam2 import FpnNeckConfig, synthetic_fpn_neck_inputs, synthetic_fpn_neck_weights

SMALL = ["--config", "tiny", "--image-size", "64x96"]


def one_line_error(capsys, command: str) -> str:
    captured = capsys.readouterr()
    err = captured.err
    assert err.count("\n") == 1 and err.startswith(f"rlxpy {command}: error: "), err
    return err.strip()[len(f"rlxpy {command}: error: "):]


# -- seeds -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["fpn-neck"], ["difftest"], ["bisect", "case.rlx"], ["reduce", "case.rlx", "-o", "r.rlx"],
                                     ["run", "g.rlx"]])
def test_negative_seed_is_refused_at_the_option(capsys, command):
    assert main([*command, "--seed", "-1"]) == 2
    message = one_line_error(capsys, command[0])
    assert message.startswith("argument --seed: seed -1 is negative: expected an integer >= 0")


def test_negative_seed_in_the_python_api():
    cfg = FpnNeckConfig.for_hiera("tiny", image_size=64)
    for make in (synthetic_fpn_neck_weights, synthetic_fpn_neck_inputs):
        with pytest.raises(OptionError, match=r"seed -1: expected an integer >= 0"):
            make(cfg, -1)


# -- bisect / reduce / replay inputs ---------------------------------------------------------------

@pytest.fixture
def case(tmp_path, rng):
    b = GraphBuilder("case")
    x, y = b.input("x", (2, 3)), b.input("y", (3, 4))
    b.output("z", b.scale(b.matmul(x, y), factor=2.0))
    save_graph(b.build(), tmp_path / "case.rlx")
    return tmp_path, {"x": rng.standard_normal((2, 3)).astype(np.float32),
                      "y": rng.standard_normal((3, 4)).astype(np.float32)}


@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("y"), "missing input 'y': expected a float32 array of shape [3, 4]"),
    (lambda a: a.update(w=a["x"]), "unknown input 'w'; this graph takes 'x', 'y'"),
    (lambda a: a.update(y=a["y"].T.copy()), "input 'y': wrong shape: expected shape [3, 4], got [4, 3]"),
    (lambda a: a.update(x=a["x"][0]), "input 'x': wrong rank: expected shape [2, 3], got [3]"),
    (lambda a: a.update(y=(10 * a["y"]).astype(np.int32)), "input 'y': dtype int32 is not a float type; expected float32 of shape [3, 4]"),
])
@pytest.mark.parametrize("command", ["bisect", "reduce"])
def test_case_inputs_are_checked_against_the_graph(case, capsys, command, change, message):
    folder, arrays = case
    change(arrays)
    np.savez(folder / "bad.npz", **arrays)
    extra = ["-o", str(folder / "small.rlx")] if command == "reduce" else []
    assert main([command, str(folder / "case.rlx"), "--inputs", str(folder / "bad.npz"), "--target", "interp", *extra]) == 2
    assert one_line_error(capsys, command) == f"inputs file {folder / 'bad.npz'}: {message}"
    assert not (folder / "small.rlx").exists()


def test_inputs_beside_the_case_and_in_a_reproducer_are_checked(case, capsys):
    folder, arrays = case
    arrays.pop("x")
    np.savez(folder / "inputs.npz", **arrays)
    assert main(["bisect", str(folder / "case.rlx"), "--target", "interp"]) == 2
    assert one_line_error(capsys, "bisect") == f"inputs file {folder / 'inputs.npz'}: missing input 'x': expected a float32 array of shape [2, 3]"
    (folder / "case.json").write_text('{"pipeline": "default", "target": "interp"}')
    assert main(["replay", str(folder)]) == 2
    assert one_line_error(capsys, "replay") == f"inputs file {folder / 'inputs.npz'}: missing input 'x': expected a float32 array of shape [2, 3]"


def test_good_case_inputs_still_run(case, capsys):
    folder, arrays = case
    np.savez(folder / "good.npz", **{k: v.astype(np.float64) for k, v in arrays.items()})
    assert main(["bisect", str(folder / "case.rlx"), "--inputs", str(folder / "good.npz"), "--target", "interp"]) == 0
    assert capsys.readouterr().err == ""


# -- fpn-neck inputs: the layout -------------------------------------------------------------------

BASE = FpnNeckConfig.for_hiera("base_plus", image_size=256)


@pytest.fixture
def base_inputs(rng):
    return {f"x{i}": rng.standard_normal(BASE.input_shape(i)).astype(np.float32) for i in range(4)}


def run_inputs(tmp_path, arrays, *options):
    np.savez(tmp_path / "in.npz", **arrays)
    return main(["fpn-neck", "--inputs", str(tmp_path / "in.npz"), *options])


def test_nchw_x0_is_named_as_such(tmp_path, capsys, base_inputs):
    nchw = {k: v.transpose(0, 3, 1, 2) for k, v in base_inputs.items()}
    assert run_inputs(tmp_path, nchw) == 2
    assert one_line_error(capsys, "fpn-neck") == (
        f"inputs file {tmp_path / 'in.npz'}: input 'x0' has shape [1, 112, 64, 64], but the neck takes BHWC "
        "(channels-last) [batch, H/4, W/4, 112]; it looks like NCHW (channels-first; axis 1 holds the 112 "
        "channels): transpose it with .transpose(0, 2, 3, 1)")


def test_nchw_level_says_what_was_inferred(tmp_path, capsys, base_inputs):
    base_inputs["x2"] = base_inputs["x2"].transpose(0, 3, 1, 2)
    assert run_inputs(tmp_path, base_inputs) == 2
    message = one_line_error(capsys, "fpn-neck")
    assert message.startswith(f"inputs file {tmp_path / 'in.npz'}: input 'x2': expected BHWC (channels-last) "
                              "shape [1, 16, 16, 448], got [1, 448, 16, 16]; image size 256x256 and batch 1 were "
                              "inferred from x0; it looks like NCHW")
    assert run_inputs(tmp_path, base_inputs, "--image-size", "256") == 2
    assert "image size 256x256 from --image-size, batch 1 inferred from x0" in one_line_error(capsys, "fpn-neck")


def test_wrong_channels_suggest_the_config(tmp_path, capsys, base_inputs):
    tiny = synthetic_fpn_neck_inputs(FpnNeckConfig.for_hiera("tiny", image_size=256), 3)
    assert run_inputs(tmp_path, tiny) == 2
    assert one_line_error(capsys, "fpn-neck").endswith(
        "input 'x0': expected BHWC (channels-last) shape [1, 64, 64, 112], got [1, 64, 64, 96]; image size "
        "256x256 and batch 1 were inferred from x0; 96 channels at level 0 would be --config tiny or small")
    base_inputs["x0"] = base_inputs["x0"][0]
    assert run_inputs(tmp_path, base_inputs) == 2
    assert one_line_error(capsys, "fpn-neck").endswith(
        "input 'x0': expected BHWC (channels-last) shape [1, 256, 256, 112], got [64, 64, 112]; "
        "image size 1024x1024 and batch 1 are the defaults")


def test_inputs_dtype_is_checked_before_any_work(tmp_path, capsys, base_inputs):
    base_inputs["x1"] = (100 * base_inputs["x1"]).astype(np.int16)
    assert run_inputs(tmp_path, base_inputs) == 2
    assert one_line_error(capsys, "fpn-neck") == (
        f"inputs file {tmp_path / 'in.npz'}: input 'x1': dtype int16 is not a float type; expected float32 of "
        "shape [1, 32, 32, 224]")


# -- files that are not regular files --------------------------------------------------------------

@pytest.fixture
def special(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "folder.npz").mkdir()
    os.symlink(tmp_path / "gone", tmp_path / "dangling")
    return {"directory": (tmp_path / "folder.npz", "is a directory, not a regular file"),
            "fifo": (tmp_path / "pipe", "is a named pipe (FIFO), not a regular file"),
            "device": (Path("/dev/zero"), "is a character device, not a regular file"),
            "dangling": (tmp_path / "dangling", f"a symbolic link to {tmp_path / 'gone'}, which does not exist")}


@pytest.mark.parametrize("kind", ["directory", "fifo", "device", "dangling"])
@pytest.mark.parametrize("option, what", [("--weights", "weights"), ("--inputs", "inputs")])
def test_special_files_say_what_they_are(special, capsys, kind, option, what):
    path, message = special[kind]
    assert main(["fpn-neck", *SMALL, option, str(path)]) == 2       # at once: a FIFO is never opened
    assert one_line_error(capsys, "fpn-neck") == f"{what} file {path}: {message}"


def small_graph(tmp_path, with_param: bool):
    b = GraphBuilder("small")
    x = b.input("x", (2, 3))
    b.output("y", b.matmul(x, b.param("w", (3, 4))) if with_param else b.scale(x, factor=2.0))
    save_graph(b.build(), tmp_path / "small.rlx")
    return tmp_path / "small.rlx"


@pytest.mark.parametrize("kind", ["directory", "fifo", "device", "dangling"])
@pytest.mark.parametrize("option, what", [("--params", "params"), ("--inputs", "inputs")])
def test_run_special_files_say_what_they_are(special, tmp_path, capsys, kind, option, what):
    path, message = special[kind]
    graph = small_graph(tmp_path, with_param=option == "--params")
    assert main(["run", str(graph), option, str(path)]) == 2
    assert one_line_error(capsys, "run") == f"{what} file {path}: {message}"


@pytest.mark.parametrize("kind", ["directory", "fifo", "dangling"])
def test_run_special_graph_file_says_what_it_is(tmp_path, capsys, kind):
    path = tmp_path / "graph.rlx"
    {"directory": path.mkdir, "fifo": lambda: os.mkfifo(path),
     "dangling": lambda: os.symlink(tmp_path / "gone.rlx", path)}[kind]()
    message = {"directory": "is a directory, not a regular file", "fifo": "is a named pipe (FIFO), not a regular file",
               "dangling": f"a symbolic link to {tmp_path / 'gone.rlx'}, which does not exist"}[kind]
    assert main(["run", str(path)]) == 2
    assert one_line_error(capsys, "run") == f"graph file {path}: {message}"


# -- float64 weights that overflow float32 ---------------------------------------------------------

def test_float64_weights_beyond_float32_say_overflow(tmp_path, capsys, rng):
    cfg = FpnNeckConfig.for_hiera("tiny", image_size=(64, 96))
    params = {k: v.astype(np.float64) for k, v in synthetic_fpn_neck_weights(cfg, 2).items()}
    key = "image_encoder.neck.convs.1.conv.weight"
    params[key].reshape(-1)[[3, 70, 900]] = [4e38, -1e39, 7.5e40]
    save_file(params, str(tmp_path / "w.safetensors"))
    assert main(["fpn-neck", *SMALL, "--weights", str(tmp_path / "w.safetensors")]) == 2
    assert one_line_error(capsys, "fpn-neck") == (
        f"key '{key}' in {tmp_path / 'w.safetensors'}: 3 value(s) overflow float32 (largest magnitude 7.5e+40; "
        "float32 holds up to 3.40282e+38)")


# -- output paths, checked before any work ---------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--out", "{tmp}/no/dir/o.npz"], "--out {tmp}/no/dir/o.npz: directory {tmp}/no/dir does not exist"),
    (["--out", "{tmp}"], "--out {tmp}: is a directory; expected a file name"),
    (["--emit-ir", "{tmp}/no/neck.rlx"], "--emit-ir {tmp}/no/neck.rlx: directory {tmp}/no does not exist"),
    (["--emit-ir", "{tmp}/neck.txt"], "--emit-ir {tmp}/neck.txt: the file name must end in .rlx"),
    (["--dump-dir", "{tmp}/file/sub"], "--dump-dir {tmp}/file/sub: cannot be created, {tmp}/file is not a directory"),
])
def test_fpn_neck_output_paths_before_any_work(tmp_path, capsys, monkeypatch, args, message):
    (tmp_path / "file").write_text("x")
    import rlxpy.cli.fpn_neck as cli
    monkeypatch.setattr(cli, "build_fpn_neck_ir", lambda cfg: pytest.fail("work started before the paths were checked"))
    assert main(["fpn-neck", *SMALL, *[a.replace("{tmp}", str(tmp_path)) for a in args]]) == 2
    assert one_line_error(capsys, "fpn-neck") == message.replace("{tmp}", str(tmp_path))


@pytest.mark.parametrize("args, message", [
    (["--out", "{tmp}/no/dir/o.npz"], "--out {tmp}/no/dir/o.npz: directory {tmp}/no/dir does not exist"),
    (["--out", "{tmp}"], "--out {tmp}: is a directory; expected a file name"),
    (["--dump-dir", "{tmp}/file/sub"], "--dump-dir {tmp}/file/sub: cannot be created, {tmp}/file is not a directory"),
])
def test_run_output_paths_before_any_work(tmp_path, capsys, monkeypatch, args, message):
    (tmp_path / "file").write_text("x")
    graph = small_graph(tmp_path, with_param=False)
    import rlxpy.cli.run as cli
    monkeypatch.setattr(cli, "read_graph", lambda path: pytest.fail("work started before the paths were checked"))
    assert main(["run", str(graph), *[a.replace("{tmp}", str(tmp_path)) for a in args]]) == 2
    assert one_line_error(capsys, "run") == message.replace("{tmp}", str(tmp_path))


def test_out_is_written_exactly_where_asked(tmp_path, capsys):
    assert main(["fpn-neck", *SMALL, "--out", str(tmp_path / "result.data")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.data"]       # not result.data.npz
    assert "features_0" in np.load(tmp_path / "result.data")


def test_difftest_out_must_be_a_directory(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("x")
    import rlxpy.cli.difftest as cli
    monkeypatch.setattr(cli, "seeded_case", lambda *a: pytest.fail("work started before --out was checked"))
    assert main(["difftest", "--count", "1", "--out", str(tmp_path / "file")]) == 2
    assert one_line_error(capsys, "difftest") == f"--out {tmp_path / 'file'}: exists and is not a directory"
    assert main(["difftest", "--count", "1", "--out", str(tmp_path / "file" / "sub")]) == 2
    assert one_line_error(capsys, "difftest") == f"--out {tmp_path / 'file' / 'sub'}: cannot be created, {tmp_path / 'file'} is not a directory"


@pytest.mark.parametrize("output, message", [
    ("{tmp}/no/small.rlx", "-o {tmp}/no/small.rlx: directory {tmp}/no does not exist"),
    ("{tmp}/small.txt", "-o {tmp}/small.txt: the file name must end in .rlx"),
])
def test_reduce_output_before_any_work(case, capsys, monkeypatch, output, message):
    folder, arrays = case
    import rlxpy.cli.difftest as cli
    monkeypatch.setattr(cli, "reduce_case", lambda *a, **k: pytest.fail("reduced before -o was checked"))
    assert main(["reduce", str(folder / "case.rlx"), "-o", output.replace("{tmp}", str(folder))]) == 2
    assert one_line_error(capsys, "reduce") == message.replace("{tmp}", str(folder))


@pytest.mark.parametrize("option", ["--save", "--plot"])
def test_bench_output_paths_before_any_work(tmp_path, capsys, monkeypatch, option):
    import rlxpy.benchmark as bench
    monkeypatch.setattr(bench, "run_bench", lambda *a, **k: pytest.fail("timed before the path was checked"))
    bad = tmp_path / "no" / "result.json"
    assert main(["bench", "--config", "tiny", "--image-size", "64", option, str(bad)]) == 2
    assert one_line_error(capsys, "bench") == f"{option} {bad}: directory {bad.parent} does not exist"


# -- the version and the environment ---------------------------------------------------------------

def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"rlxpy {rlxpy.__version__}\n"
    assert rlxpy.__version__ == importlib.metadata.version("rlxpy")       # one place: the package's own
    done = subprocess.run([str(Path(sys.executable).parent / "rlxpy"), "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and f"rlxpy {rlxpy.__version__}." in done.stdout


@pytest.mark.parametrize("level", ["7", "-1", "2.0", "loud"])
def test_debug_level_out_of_range(monkeypatch, capsys, level):
    monkeypatch.setenv("RLXPY_DEBUG", level)
    assert main(["fpn-neck", *SMALL]) == 2
    assert one_line_error(capsys, "fpn-neck") == f"RLXPY_DEBUG={level!r}: expected a level 0, 1, 2 or 3"
    from rlxpy import ConfigError
    from rlxpy.config import debug_level
    with pytest.raises(ConfigError):
        debug_level()


@pytest.mark.parametrize("command", ["opt", "graph"])
def test_a_graph_that_is_no_regular_file_is_named(command, tmp_path, capsys):
    import os
    fifo = tmp_path / "pipe.rlx"
    os.mkfifo(fifo)
    for path, what in ((tmp_path, "is a directory"), (fifo, "is a named pipe (FIFO)"), ("/dev/zero", "is a character device")):
        assert main([command, str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"graph file {path}: {what}, not a regular file" in err, err
