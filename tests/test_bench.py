"""`rlxpy bench` at a tiny size: it runs, its JSON parses, its errors are one line. No timing
assertions: speed is what the benchmark prints, not what a test asserts."""

import json
import os
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
    assert err == ""                                        # no progress in a pipe, no log with --json
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
    busy = doc["busy"]                                      # measured over the timed loop
    assert busy["method"] == "proc-stat" and busy["threads"] == 2 and busy["seconds"] > 0
    assert busy["others_cores"] >= 0 and busy["ours_cores"] > 0 and isinstance(busy["warning"], str)


def test_table_plot_and_saved_json(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    png, saved = tmp_path / "bench.png", tmp_path / "bench.json"
    code, out, err = run(capsys, *TINY, "--skip", "rlxpy interp,numpy naive", "--plot", str(png), "--save", str(saved),
                         "--progress")
    assert code == 0, err
    assert re.search(r"timing: 100%\|.*\| 10/10 \[.*(call/s|s/call), numpy best\]", err), err   # 5 rows x 2 repeats
    assert {r["name"] for r in json.loads(saved.read_text())["bench"]["rows"]} >= {"rlxpy llvm (out=)", "numpy best"}
    assert out.startswith("SAM 2 FPN neck, hiera-tiny, image 64x64, batch 1")
    assert "rlxpy llvm (out=)" in out and "FMA floor (llvmlite calibration)" in out
    assert "(rlxpy interp: skipped (--skip))" in out
    assert re.search(r"\nload: other processes kept \d+\.\d\d of \d+ core\(s\) busy on average while timing", out)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_json(capsys):
    code, out, err = run(capsys, "--config", "tiny", "--image-size", "64", "--repeat", "1", "--sweep",
                         "--sweep-sizes", "64,96", "--sweep-batches", "1,2", "--json", "--progress")
    assert code == 0, err
    assert re.search(r"timing: 100%\|.*\| 4/4 \[.*(call/s|s/call), image 64x64 batch 2\]", err), err
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
     "--save /nonexistent/dir/x.json: directory /nonexistent/dir does not exist"),
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


# -- is the machine busy? ----------------------------------------------------------------------------

SPIN = "import time\nt = time.monotonic()\nwhile time.monotonic() - t < {s}: pass\nprint(time.process_time())"


def test_busy_meter_sees_a_spinning_process():
    import subprocess
    from rlxpy.benchmark.busy import BusyMeter
    meter = BusyMeter(threads=len(os.sched_getaffinity(0)))        # every core timed
    done = subprocess.run([sys.executable, "-c", SPIN.format(s=1.5)], capture_output=True, text=True, timeout=60)
    busy = meter.stop()
    spinner_cpu = float(done.stdout)                                # the CPU time it got, whatever else ran
    assert busy.method == "proc-stat" and busy.ours_cores < 0.2
    assert busy.others_cores * busy.seconds >= spinner_cpu - 0.15, (busy, spinner_cpu)
    assert busy.warning.startswith("the machine was busy while timing: other processes used "), busy


def test_busy_meter_counts_this_process_as_its_own():
    import time
    from rlxpy.benchmark.busy import BusyMeter
    meter = BusyMeter(threads=1)
    cpu, t = time.process_time(), time.monotonic()
    while time.monotonic() - t < 0.8:
        pass
    busy = meter.stop()
    cpu = time.process_time() - cpu
    assert abs(busy.ours_cores * busy.seconds - cpu) < 0.05, (busy, cpu)
    assert busy.total_cores * busy.seconds >= cpu - 0.15, (busy, cpu)     # the machine's counters saw it too
    assert busy.others_cores == pytest.approx(max(0.0, busy.total_cores - busy.ours_cores))


def _samples(seconds, ours, total, steal=0.0):
    from rlxpy.benchmark.busy import Sample
    return Sample(100.0, 5.0, 1000.0, 7.0, 0.5), Sample(100.0 + seconds, 5.0 + ours * seconds,
                                                           1000.0 + total * seconds, 7.0 + steal * seconds, 3.0)


@pytest.mark.parametrize("cpus, threads, ours, total, steal, warned", [
    (2, 2, 1.90, 1.95, 0.0, ""),                                   # quiet: 0.05 cores of others
    (2, 2, 1.50, 2.00, 0.0, "other processes used 25% of the 2 timed core(s) (0.50 cores busy besides"),
    (4, 2, 2.00, 3.50, 0.0, ""),                                   # others fit on the two idle cores
    (4, 2, 2.00, 4.00, 0.0, ""),                                   # exactly the idle cores' worth
    (4, 2, 1.60, 4.00, 0.0, "other processes used 20% of the 2 timed core(s) (2.40 cores busy besides"),
    (2, 2, 1.60, 1.60, 0.40, "the hypervisor took 20% of the timed core(s) (steal)"),
])
def test_busy_warning_is_decided_by_the_figures(cpus, threads, ours, total, steal, warned):
    from rlxpy.benchmark.busy import measure
    busy = measure(*_samples(2.0, ours, total, steal), threads=threads, cpus=cpus)
    assert busy.method == "proc-stat" and busy.seconds == pytest.approx(2.0)
    assert busy.ours_cores == pytest.approx(ours) and busy.others_cores == pytest.approx(total - ours)
    if warned:
        assert warned in busy.warning and busy.warning.startswith("the machine was busy while timing: ")
    else:
        assert busy.warning == "" and busy.contended <= 0.1


def test_busy_falls_back_to_the_load_average():
    from rlxpy.benchmark.busy import Sample, measure
    busy = measure(Sample(0.0, 0.0, None, None, 1.0), Sample(2.0, 2.0, None, None, 1.8), threads=2, cpus=2)
    assert busy.method == "loadavg" and busy.ours_cores == pytest.approx(1.0)
    assert busy.others_cores == pytest.approx(0.8) and "used 40% of the 2 timed core(s)" in busy.warning


def test_table_and_json_carry_the_busy_warning():
    from rlxpy.benchmark import table, to_json
    from rlxpy.benchmark.busy import measure
    from rlxpy.benchmark.runner import FLOOR_ROW, BenchResult, Row
    busy = measure(*_samples(3.0, 1.0, 2.0), threads=2, cpus=2)
    result = BenchResult("tiny", (64, 64), 1, 2, 1, 0.02, {"cpu_model": "x", "llvm_cpu": "y", "vector_isa": "z",
                                                        "cores_available": 2},
                         {"lanes": 16, "chains": 8, "per_core_gflops": 10.0, "floor_ms": 1.0},
                         [Row(FLOOR_ROW, 1.0, [1.0], 20.0, 1.0)], busy=busy.to_json())
    text = table(result)
    assert "load: other processes kept 1.00 of 2 core(s) busy on average while timing (this one 1.00, steal 0.00" in text
    assert ("WARNING: the machine was busy while timing: other processes used 50% of the 2 timed core(s) "
            "(1.00 cores busy besides this benchmark on 2)") in text
    assert json.loads(to_json(result, None))["bench"]["busy"]["warning"] == busy.warning
    quiet = measure(*_samples(3.0, 1.98, 2.0), threads=2, cpus=2)
    result.busy = quiet.to_json()
    assert "WARNING" not in table(result) and "load: other processes kept 0.02 of 2" in table(result)
