"""`rlxpy bench` at a tiny size: it runs, its JSON parses, its errors are one line. No timing
assertions: speed is what the benchmark prints, not what a test asserts."""

import json
import re
import sys

import numpy as np
import pytest

from rlxpy.benchmark import baselines
from rlxpy.benchmark import tile_ceiling
from rlxpy.benchmark.peak import CHAINS, _module, calibrate
from rlxpy.codegen.isa import host_isa
from rlxpy.codegen.jit import optimise
from rlxpy.cli import main
from rlxpy.models.sam2 import FpnNeckConfig, build_fpn_neck_ir, synthetic_fpn_neck_inputs, synthetic_fpn_neck_weights
from rlxpy.interp import evaluate
from rlxpy.passes import PassManager
from rlxpy.params import bind_params
from rlxpy.codegen.runtime import aligned_empty

TINY = ["--config", "tiny", "--image-size", "64", "--repeat", "2", "--threads", "2"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("RLXPY_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "bench-cache"))


def run(capsys, *args):
    code = main(["bench", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_json(capsys):
    code, out, err = run(capsys, *TINY, "--json", "--interp", "bilinear", "--fuse-type", "avg")
    assert code == 0, err
    doc = json.loads(out)["bench"]
    assert doc["config"] == "tiny" and doc["image_size"] == [64, 64] and doc["threads"] == 2
    assert doc["gflop"] == pytest.approx(FpnNeckConfig.for_hiera("tiny", 64).flops() / 1e9)
    rows = {r["name"]: r for r in doc["rows"]}
    expected = {"rlxpy llvm (out=)", "rlxpy llvm (fresh)", "rlxpy interp", "numpy naive", "numpy best",
                "FMA floor (llvmlite calibration)", "register tile alone (in cache)"}
    if baselines.torch_available():
        expected |= {"torch NCHW", "torch channels-last"}
    else:
        assert doc["skipped"]["torch NCHW"] == "torch is not installed"
    assert set(rows) == expected
    for name, r in rows.items():
        assert len(r["times_ms"]) == 2 and r["median_ms"] > 0 and r["gflops"] > 0
        if name.startswith("FMA"):
            assert r["x_floor"] == pytest.approx(1.0)
        elif name.startswith("register tile"):
            assert r["error"] is None                       # not the neck: checked in its own test
        else:
            assert r["error"] < 1e-5, name               # every row computes the same neck
    assert rows["numpy best"]["vs_numpy_best"] == pytest.approx(1.0)
    assert doc["peak"]["lanes"] in (8, 16) and doc["peak"]["floor_ms"] > 0
    assert "warning" not in doc["skipped"]                  # every level on the fast rule


def test_table_plot_and_saved_json(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    png, saved = tmp_path / "bench.png", tmp_path / "bench.json"
    code, out, err = run(capsys, *TINY, "--skip", "rlxpy interp,numpy naive", "--plot", str(png), "--save", str(saved))
    assert code == 0, err
    assert {r["name"] for r in json.loads(saved.read_text())["bench"]["rows"]} >= {"rlxpy llvm (out=)", "numpy best"}
    assert out.startswith("SAM 2 FPN neck, hiera-tiny, image 64x64, batch 1")
    assert "rlxpy llvm (out=)" in out and "FMA floor (llvmlite calibration)" in out
    assert "(rlxpy interp: skipped (--skip))" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_json(capsys):
    code, out, err = run(capsys, "--config", "tiny", "--image-size", "64", "--repeat", "1", "--sweep",
                         "--sweep-sizes", "64,96", "--sweep-batches", "1,2", "--json")
    assert code == 0, err
    sweep = json.loads(out)["sweep"]
    assert [p["image_size"] for p in sweep["image size"]] == [[64, 64], [96, 96]]
    assert [p["batch"] for p in sweep["batch"]] == [1, 2]
    for points in sweep.values():
        assert points[0]["linear_ratio"] == 1.0 and all(p["median_ms"] > 0 for p in points)


@pytest.mark.parametrize("args, message", [
    (["--repeat", "0"], "--repeat must be at least 1, got 0"),
    (["--threads", "0"], "--threads must be at least 1, got 0"),
    (["--skip", "numpy fast"], "--skip 'numpy fast': no such row"),
    (["--image-size", "50"], "image_size must be (height, width) with sides positive multiples of 32"),
    (["--sweep", "--sweep-sizes", "64"], "--sweep-sizes and --sweep-batches need at least two values each"),
    (["--sweep", "--plot", "x.png"], "--plot draws the comparison table; it does not apply to --sweep"),
    (["--repeat", "1", "--skip", "rlxpy interp,numpy naive", "--save", "/nonexistent/dir/x.json"],
     "--save /nonexistent/dir/x.json: No such file or directory"),
])
def test_bad_options_are_one_line(capsys, args, message):
    code, out, err = run(capsys, "--config", "tiny", "--image-size", "64", *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("rlxpy bench: error: ") and message in err


def test_missing_optional_packages_are_one_line(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)          # import matplotlib -> ImportError
    code, _, err = run(capsys, *TINY, "--skip", "rlxpy interp,numpy naive", "--plot", str(tmp_path / "x.png"))
    assert code == 2 and "--plot needs matplotlib: pip install 'rlxpy[bench]'" in err and err.count("\n") == 1
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    code, _, err = run(capsys, *TINY)
    assert code == 2 and "rlxpy bench needs threadpoolctl" in err and err.count("\n") == 1


def test_numpy_formulations_compute_the_neck(rng):
    """The baselines are references too: both numpy formulations match the interpreter."""
    for options in (dict(), dict(interp="bilinear", fuse_type="avg", top_down_levels=(0, 1, 2, 3))):
        cfg = FpnNeckConfig.for_hiera("tiny", (64, 96), 2, **options)
        params, inputs = synthetic_fpn_neck_weights(cfg, 3), synthetic_fpn_neck_inputs(cfg, 3)
        ref = evaluate(PassManager("none").run(bind_params(build_fpn_neck_ir(cfg), params)), inputs)
        for fn in (baselines.numpy_naive(cfg, params, inputs), baselines.numpy_best(cfg, params, inputs, aligned_empty)):
            got = fn()
            for i in range(4):
                r = ref[f"features_{i}"]
                assert np.abs(got[f"features_{i}"] - r).max() <= 1e-5 * np.abs(r).max()


def test_fma_peak_runs_the_flops_asked():
    peak = calibrate(seconds=0.002)
    assert peak.lanes in (8, 16) and peak.chains >= 8 and peak.per_core > 0
    assert peak.run(1e6) > 0
    with pytest.raises(ValueError, match="needs a pool"):
        peak.run(1e6, threads=2)


@pytest.mark.parametrize("lanes", [8, 16])
@pytest.mark.parametrize("chains", CHAINS)
def test_fma_peak_kernel_keeps_every_chain(lanes, chains):
    # The floor counts `chains` FMAs per iteration: the optimised loop must still do that many
    # (LLVM once deleted a chain whose constant start was a fixed point of its FMA).
    text = str(optimise(_module([(lanes, chains)])))
    fmas = len(re.findall(r"call .*@llvm\.fma\.v\d+f32\(", text))
    assert fmas > 0 and fmas % chains == 0, f"{fmas} FMAs for {chains} chains"


@pytest.mark.parametrize("held", tile_ceiling.HELD)
def test_tile_ceiling_does_every_pass(held):
    # Each pass starts from the last one's results, so after 3 passes from zero the buffer holds
    # 3 x (weights x panel): a pass LLVM dropped, or a wrong panel index, shows in the numbers.
    t = tile_ceiling.build(seed=3, held=held)
    assert t.shape.lanes == host_isa().lanes and t.blocks * t.shape.rows <= tile_ceiling.N
    out = t.new_out()
    t.call(out, 3)
    ref = t.reference(3)
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()
    assert t.flops_per_pass == 2 * tile_ceiling.K * t.blocks * t.shape.rows * t.shape.width


def test_tile_ceiling_runs_on_threads_and_checks_its_buffer():
    from concurrent.futures import ThreadPoolExecutor
    t = tile_ceiling.build()
    with ThreadPoolExecutor(max_workers=1) as pool:
        assert t.run(4 * t.flops_per_pass, threads=2, pool=pool) > 0
    with pytest.raises(ValueError, match="needs a pool"):
        t.run(1e6, threads=2)
    with pytest.raises(ValueError, match="of 1[0-9]+ floats .* with 3 elements"):
        t.call(np.ones(3, np.float32), 1)
    size = t.new_out().size
    shifted = aligned_empty((size + 1,))[1:]                # 4 bytes past a cache line
    with pytest.raises(ValueError, match="64-byte aligned"):
        t.call(shifted, 1)
    with pytest.raises(ValueError, match="passes must be >= 0"):
        t.call(t.new_out(), -1)
    with pytest.raises(ValueError, match="held='both': expected one of none, pixels"):
        tile_ceiling.build(held="both")
