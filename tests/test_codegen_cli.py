"""`rlxpy fpn-neck --target llvm` with every option, --compare interp, and one-line errors."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import scaled_error
from reference import fpn_neck
from rlxpy.cli import main
from rlxpy.codegen import RULES
from rlxpy.models.sam2 import FpnNeckConfig, save_fpn_neck_weights, synthetic_fpn_neck_weights

SMALL = ["--config", "tiny", "--image-size", "64x96"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("RLXPY_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cli-cache"))


def test_llvm_target_with_every_option(tmp_path, capsys, rng):
    cfg = FpnNeckConfig.for_hiera("tiny", image_size=(64, 96), batch=2, fuse_type="avg", interp="bilinear",
                                  top_down_levels=(1, 2, 3))
    params = synthetic_fpn_neck_weights(cfg, 4)
    save_fpn_neck_weights(tmp_path / "w.safetensors", params)
    inputs = {f"x{i}": rng.standard_normal(cfg.input_shape(i)).astype(np.float32) for i in range(4)}
    np.savez(tmp_path / "in.npz", **inputs)
    code = main(["fpn-neck", "--config", "tiny", "--weights", str(tmp_path / "w.safetensors"),
                 "--inputs", str(tmp_path / "in.npz"), "--out", str(tmp_path / "out.npz"), "--target", "llvm",
                 "--fuse-type", "avg", "--interp", "bilinear", "--top-down-levels", "1,2,3", "--seed", "3",
                 "--compare", "interp", "--strict", "--no-cache", "--threads", "2", "--dump-dir", str(tmp_path / "dump")])
    assert code == 0
    out = capsys.readouterr().out
    assert "target   llvm" in out and "image 64x96 batch 2" in out
    assert re.search(r"@fpn_neck on llvm \(.*, 2 thread\(s\)\): 4 native, \d+ alias, 0 on the interpreter", out)
    assert "object code: off" in out
    compare = out[out.index("compare with interp"):]
    rows = re.findall(r"^  (features_\d|pos_\d) +(\S+) +(\S+)$", compare, re.M)
    assert [r[0] for r in rows] == [f"{k}_{i}" for i in range(4) for k in ("features", "pos")]
    assert all(float(rel) < 1e-5 for _, _, rel in rows)
    got = np.load(tmp_path / "out.npz")
    ref = fpn_neck([inputs[f"x{i}"] for i in range(4)], params, fuse_type="avg", interp="bilinear",
                   top_down_levels=(1, 2, 3))
    for name, expected in ref.items():
        assert scaled_error(got[name], expected) < 1e-5
    llvm_files = sorted(p.name for p in (tmp_path / "dump").iterdir() if p.suffix in (".ll", ".s"))
    assert llvm_files == ["fpn_neck.ll", "fpn_neck.opt.ll", "fpn_neck.s"]


def test_report_shows_fallbacks(capsys, monkeypatch):
    monkeypatch.setitem(RULES.overrides, "upsample_add", [])
    assert main(["fpn-neck", *SMALL, "--target", "llvm", "--pipeline", "none"]) == 0
    out = capsys.readouterr().out
    assert "1 on the interpreter" in out
    assert re.search(r"%\w+ +upsample_add +interp +no LLVM lowering rule for op 'upsample_add'", out)


def test_cache_is_used_across_runs(capsys):
    assert main(["fpn-neck", *SMALL, "--target", "llvm"]) == 0
    capsys.readouterr()
    assert main(["fpn-neck", *SMALL, "--target", "llvm", "--seed", "5"]) == 0
    assert "object code: hit" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--strict"], "--strict applies to --target llvm only"),
    (["--compare", "interp"], "--compare applies to --target llvm only"),
    (["--threads", "2"], "--threads applies to --target llvm only"),
    (["--no-cache"], "--no-cache applies to --target llvm only"),
    (["--target", "llvm", "--threads", "0"], "--threads must be a positive integer, got 0"),
    (["--target", "llvm", "--threads", "x"], "argument --threads: invalid int value: 'x'"),
    (["--target", "llvm", "--compare", "numpy"], "argument --compare: invalid choice: 'numpy'"),
])
def test_bad_llvm_options_give_one_line(capsys, args, message):
    assert main(["fpn-neck", *SMALL, *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rlxpy fpn-neck: error: ") and message in err, err


def test_strict_failure_is_one_line(capsys, monkeypatch):
    monkeypatch.setitem(RULES.overrides, "scale", [])
    assert main(["fpn-neck", *SMALL, "--target", "llvm", "--fuse-type", "avg", "--strict", "--pipeline", "none"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert re.search(r"node %\w+ \(scale\): no LLVM lowering rule for op 'scale'; strict=True forbids", err)


def test_console_script_without_traceback():
    exe = str(Path(sys.executable).parent / "rlxpy")
    ok = subprocess.run([exe, "fpn-neck", *SMALL, "--target", "llvm", "--compare", "interp"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "compare with interp" in ok.stdout
    bad = subprocess.run([exe, "fpn-neck", *SMALL, "--strict"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
