"""The command line: the main job, its files, and one-line errors with exit status 2."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rlxpy.cli import main
from rlxpy.models.sam2 import FpnNeckConfig, save_fpn_neck_weights, synthetic_fpn_neck_weights
from conftest import scaled_error
from reference import fpn_neck

SMALL = ["--config", "tiny", "--image-size", "64x96"]


def test_main_job_runs_on_synthetic_data(capsys):
    assert main(["fpn-neck", *SMALL]) == 0
    out = capsys.readouterr().out
    assert "hiera-tiny image 64x96 batch 1" in out
    assert "weights  synthetic (seed 0)" in out
    assert "x0 [1, 16, 24, 96]" in out and "nodes (" in out
    for stage in ("build IR", "weights", "compile", "run"):
        assert stage in out
    for name in ("features_0", "pos_0", "features_3", "pos_3"):
        assert name in out


def test_weights_inputs_and_out_files(tmp_path, capsys, rng):
    cfg = FpnNeckConfig.for_hiera("tiny", image_size=(64, 96), batch=2, fuse_type="avg", interp="bilinear",
                                  top_down_levels=(1, 2, 3))
    params = synthetic_fpn_neck_weights(cfg, 7)
    save_fpn_neck_weights(tmp_path / "w.safetensors", params)
    inputs = {f"x{i}": rng.standard_normal(cfg.input_shape(i)).astype(np.float32) for i in range(4)}
    np.savez(tmp_path / "in.npz", **inputs)
    code = main(["fpn-neck", "--config", "tiny", "--weights", str(tmp_path / "w.safetensors"),
                 "--inputs", str(tmp_path / "in.npz"), "--out", str(tmp_path / "out.npz"),
                 "--fuse-type", "avg", "--interp", "bilinear", "--top-down-levels", "1,2,3"])
    assert code == 0
    assert "image 64x96 batch 2" in capsys.readouterr().out     # implied by the inputs
    got = np.load(tmp_path / "out.npz")
    ref = fpn_neck([inputs[f"x{i}"] for i in range(4)], params, fuse_type="avg", interp="bilinear",
                   top_down_levels=(1, 2, 3))
    assert sorted(got.files) == sorted(ref)
    for name, expected in ref.items():
        assert got[name].dtype == np.float32
        assert scaled_error(got[name], expected) < 1e-5


def test_seed_changes_the_synthetic_run(tmp_path):
    for seed in ("1", "2"):
        assert main(["fpn-neck", *SMALL, "--seed", seed, "--out", str(tmp_path / f"{seed}.npz")]) == 0
    a, b = np.load(tmp_path / "1.npz"), np.load(tmp_path / "2.npz")
    assert not np.array_equal(a["features_0"], b["features_0"])
    assert np.array_equal(a["pos_0"], b["pos_0"])


def bad_files(tmp_path):
    cfg = FpnNeckConfig.for_hiera("tiny", image_size=(64, 96))
    np.savez(tmp_path / "missing.npz", x0=np.ones(cfg.input_shape(0), np.float32))
    np.savez(tmp_path / "shape.npz", **{f"x{i}": np.ones(cfg.input_shape(i), np.float32) for i in range(3)},
             x3=np.ones((1, 2, 3, 5), np.float32))
    (tmp_path / "junk.npz").write_text("not a zip")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 4)
    params = synthetic_fpn_neck_weights(cfg)
    params["image_encoder.neck.convs.1.conv.bias"] = np.ones(3, np.float32)
    save_fpn_neck_weights(tmp_path / "shape.safetensors", params)


@pytest.mark.parametrize("args, message", [
    (["--config", "huge"], "argument --config: invalid choice: 'huge'"),
    (["--image-size", "100"], "image_size must be (height, width) with sides positive multiples of 32"),
    (["--image-size", "12xx"], "--image-size '12xx': expected N or HEIGHTxWIDTH"),
    (["--batch", "0"], "batch must be an integer >= 1"),
    (["--top-down-levels", "2,x"], "--top-down-levels '2,x': expected comma-separated integers"),
    (["--top-down-levels", "5"], "top_down_levels must be distinct levels in 0..3"),
    (["--fuse-type", "max"], "argument --fuse-type: invalid choice: 'max'"),
    (["--target", "gpu"], "argument --target: invalid choice: 'gpu'"),
    (["--weights", "{tmp}/absent.safetensors"], "weights file {tmp}/absent.safetensors: not found"),
    (["--weights", "{tmp}/junk.safetensors"], "not a readable safetensors file"),
    (["--weights", "{tmp}/shape.safetensors"], "key 'image_encoder.neck.convs.1.conv.bias' in {tmp}/shape.safetensors: expected shape [256], got [3]"),
    (["--inputs", "{tmp}/absent.npz"], "inputs file {tmp}/absent.npz: not found"),
    (["--inputs", "{tmp}/junk.npz"], "inputs file {tmp}/junk.npz: not a readable .npz file"),
    (["--inputs", "{tmp}/missing.npz"], "inputs file {tmp}/missing.npz: missing key 'x1'"),
    (["--inputs", "{tmp}/shape.npz"], "input 'x3': expected BHWC (channels-last) shape [1, 2, 3, 768], got [1, 2, 3, 5]"),
    (["--out", "{tmp}/no/such/dir/out.npz"], "directory {tmp}/no/such/dir does not exist"),
])
def test_bad_options_and_files_give_one_line(tmp_path, capsys, args, message):
    bad_files(tmp_path)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(["fpn-neck", *SMALL, *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rlxpy fpn-neck: error: "), err
    assert message.replace("{tmp}", str(tmp_path)) in err


@pytest.mark.parametrize("command", [[sys.executable, "-m", "rlxpy"], [str(Path(sys.executable).parent / "rlxpy")]])
def test_module_and_console_script(command):
    ok = subprocess.run(command + ["fpn-neck", *SMALL], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "features_0" in ok.stdout
    bad = subprocess.run(command + ["fpn-neck", "--batch", "-3"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == "rlxpy fpn-neck: error: batch must be an integer >= 1, got -3"


def test_emit_ir_dump_dir_and_fusion_report(tmp_path, capsys):
    from rlxpy.ir.textio import load_graph
    args = ["fpn-neck", *SMALL, "--emit-ir", str(tmp_path / "neck.rlx"), "--dump-dir", str(tmp_path / "dumps"),
            "--report", "--pipeline", "fold-constants,fuse-epilogue{skip=upsample_add},cse,dce"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "fuse-epilogue report: 4 applied, 1 missed" in out
    assert "missed  %features2: not fused: disabled by the option fuse-epilogue{skip=upsample_add}" in out
    emitted = load_graph(tmp_path / "neck.rlx")
    assert len(emitted.params) == 8 and not emitted.of_op("fused_matmul")     # before any pass
    dumps = sorted(p.name for p in (tmp_path / "dumps").glob("*.rlx"))
    assert dumps == ["000-input.rlx", "001-fold-constants.rlx", "002-fuse-epilogue.rlx", "003-cse.rlx", "004-dce.rlx"]
    assert len(load_graph(tmp_path / "dumps" / "004-dce.rlx").of_op("fused_matmul")) == 4


def test_bad_pipeline_is_one_line(capsys):
    assert main(["fpn-neck", *SMALL, "--pipeline", "fold,dce"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlxpy fpn-neck: error: unknown pass 'fold'") and err.count("\n") == 1
