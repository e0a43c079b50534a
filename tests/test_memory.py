"""Memory: a graph that can never fit is refused at compile time with both figures, and running
out of memory where rlxpy allocates is an OutOfMemoryError naming what needed how many bytes."""

import json
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import rlxpy
from rlxpy import GraphBuilder, OutOfMemoryError
from rlxpy import memory
from rlxpy.memory import Limit, cgroup_limits, check_fits, format_bytes

RLXPY = str(Path(sys.executable).parent / "rlxpy")


def test_format_bytes():
    assert format_bytes(2**40 * 4) == "4096.0 GiB"
    assert format_bytes(3 * 2**29) == "1.5 GiB"
    assert format_bytes(256 * 2**20) == "256.0 MiB"
    assert format_bytes(1536) == "1.5 KiB" and format_bytes(12) == "12 B"


def huge_graph():
    """An input of 2**40 floats (4 TiB) and a result of the same size: no machine holds it."""
    b = GraphBuilder("huge")
    x = b.input("x", (2**20, 2**20))
    b.output("y", b.scale(x, factor=2.0))
    return b.build()


@pytest.mark.parametrize("target", ["interp", "llvm"])
def test_graph_that_can_never_fit_is_refused_at_compile_time(target):
    with pytest.raises(OutOfMemoryError) as e:
        rlxpy.compile(huge_graph(), target=target)
    message = str(e.value)
    assert message.startswith("a call of @huge needs 8192.0 GiB (inputs 4096.0 GiB, outputs 4096.0 GiB)")
    assert "more than this process may ever use: " in message and "GiB (" in message
    assert isinstance(e.value, MemoryError)            # a caller catching MemoryError still does


def only_after_passes():
    """Inputs and outputs small; a 1 GiB intermediate appears only in what a target holds."""
    b = GraphBuilder("wide")
    x = b.input("x", (2**14, 4))
    y = b.matmul(x, b.const(np.full((4, 2**14), 0.5, np.float32)))      # 2**28 floats = 1 GiB
    b.output("s", b.matmul(y, b.const(np.full((2**14, 1), 0.25, np.float32))))
    return b.build()


@pytest.mark.parametrize("target, held", [("interp", "values 1.0 GiB"), ("llvm", "scratch 1.0 GiB")])
def test_what_each_target_holds_is_compared_after_the_passes(monkeypatch, target, held):
    monkeypatch.setattr(memory, "memory_limits", lambda: [Limit(512 * 2**20, "a test limit")])
    with pytest.raises(OutOfMemoryError) as e:
        rlxpy.compile(only_after_passes(), target=target, **({"cache": False} if target == "llvm" else {}))
    assert f"a call of @wide on {target} needs 1.0 GiB" in str(e.value)
    assert held in str(e.value) and "512.0 MiB (a test limit)" in str(e.value)


def test_graphs_that_might_fit_are_not_refused(monkeypatch, rng):
    b = GraphBuilder("fits")
    x = b.input("x", (256, 256))
    b.output("y", b.scale(x, factor=3.0))
    g = b.build()
    monkeypatch.setattr(memory, "memory_limits", lambda: [Limit(3 * 256 * 256 * 4, "exactly enough")])
    for target in ("interp", "llvm"):
        exe = rlxpy.compile(g, target=target)
        v = rng.standard_normal((256, 256)).astype(np.float32)
        np.testing.assert_array_equal(exe(x=v)["y"], v * np.float32(3.0))


def test_check_fits_names_the_smallest_limit(monkeypatch):
    monkeypatch.setattr(memory, "memory_limits", lambda: [Limit(8 << 30, "physical memory + swap"),
                                                          Limit(2 << 30, "RLIMIT_AS, ulimit -v")])
    check_fits({"inputs": 1 << 30, "outputs": 1 << 30}, "a call of @g")
    with pytest.raises(OutOfMemoryError, match=r"a call of @g needs 2\.5 GiB \(inputs 2\.0 GiB, outputs 512\.0 MiB\), "
                                              r"more than this process may ever use: 2\.0 GiB \(RLIMIT_AS, ulimit -v\)"):
        check_fits({"inputs": 2 << 30, "outputs": 1 << 29}, "a call of @g")


def test_rlimits_are_read(monkeypatch):
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    monkeypatch.setattr(resource, "getrlimit", lambda kind: (123 << 20, hard) if kind == resource.RLIMIT_DATA
                        else (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert Limit(123 << 20, "RLIMIT_DATA, ulimit -d") in memory.memory_limits()


def test_cgroup_limits_v1_and_v2(tmp_path):
    gib = 1 << 30
    v2 = tmp_path / "v2"
    (v2 / "user.slice" / "job").mkdir(parents=True)
    (v2 / "user.slice" / "memory.max").write_text(f"{4 * gib}\n")
    (v2 / "user.slice" / "memory.swap.max").write_text(f"{gib}\n")
    (v2 / "user.slice" / "job" / "memory.max").write_text("max\n")
    proc = tmp_path / "cgroup"
    proc.write_text("0::/user.slice/job\n")
    assert cgroup_limits(swap=2 * gib, proc=proc, mount=v2) == [
        Limit(5 * gib, f"cgroup {v2 / 'user.slice' / 'memory.max'} + swap")]
    v1 = tmp_path / "v1"
    (v1 / "memory" / "docker" / "c1").mkdir(parents=True)
    (v1 / "memory" / "docker" / "c1" / "memory.limit_in_bytes").write_text(f"{3 * gib}\n")
    (v1 / "memory" / "docker" / "c1" / "memory.memsw.limit_in_bytes").write_text(f"{3 * gib}\n")
    (v1 / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")      # "no limit"
    proc.write_text("5:cpu,cpuacct:/docker/c1\n4:memory:/docker/c1\n")
    assert cgroup_limits(swap=gib, proc=proc, mount=v1) == [
        Limit(3 * gib, f"cgroup {v1 / 'memory' / 'docker' / 'c1' / 'memory.limit_in_bytes'}")]


def limit_address_space(gib: float):
    def preexec():
        resource.setrlimit(resource.RLIMIT_AS, (int(gib * 2**30), resource.RLIM_INFINITY))
    return preexec


def test_cli_out_of_memory_is_one_line_with_the_figures():
    done = subprocess.run([RLXPY, "fpn-neck", "--image-size", "8192"], capture_output=True, text=True,
                          preexec_fn=limit_address_space(3), env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
                          timeout=120)
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("rlxpy fpn-neck: error: a call of @fpn_neck needs 8.6 GiB (inputs 3.3 GiB, "
                                  "outputs 5.3 GiB), more than this process may ever use: 3.0 GiB (RLIMIT_AS")


# Each case runs where rlxpy allocates, in one child process: the address-space limit is lowered to
# what the process already maps plus a margin smaller than the allocation, then raised again.
SCENARIOS = textwrap.dedent('''
    import json, resource, sys
    import numpy as np
    import rlxpy
    from rlxpy.files import load_npz
    from rlxpy import GraphBuilder
    from rlxpy.models.sam2 import FpnNeckConfig, synthetic_fpn_neck_inputs, synthetic_fpn_neck_weights

    MIB = 1 << 20
    def mapped():
        for line in open("/proc/self/status"):
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024

    def attempt(name, fn, margin=16 * MIB):
        resource.setrlimit(resource.RLIMIT_AS, (mapped() + margin, resource.RLIM_INFINITY))
        try:
            fn()
            result = ["ok", ""]
        except MemoryError as e:
            result = [type(e).__name__, str(e)]
        finally:
            resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        print(json.dumps([name] + result), flush=True)

    def chain(n):                       # x -> %mid -> %y, each n floats
        b = GraphBuilder("chain")
        x = b.input("x", (n,))
        b.output("y", b.scale(b.scale(x, factor=2.0), factor=0.5))
        return b.build()

    n = 16 * MIB                                  # 64 MiB a tensor
    x = np.random.default_rng(0).random(n, dtype=np.float32)
    interp = rlxpy.compile(chain(n), target="interp")
    attempt("interp node", lambda: interp(x=x))
    llvm = rlxpy.compile(chain(n), target="llvm", threads=1, cache=False)
    attempt("llvm output", lambda: llvm(x=x))
    attempt("llvm scratch", lambda: llvm.program._new_buffer_set())

    b = GraphBuilder("pos")
    b.output("p", b.pos_encoding(batch=1, dim=256, height=256, width=256))   # 64 MiB when folded
    attempt("fold-constants", lambda: rlxpy.compile(b.build(), target="interp"))
    cfg = FpnNeckConfig.for_hiera("tiny", image_size=2048)
    attempt("synthetic inputs", lambda: synthetic_fpn_neck_inputs(cfg, 3))
    x64 = x.astype(np.float64)
    attempt("input conversion", lambda: interp(x=x64))
    del x64
    np.savez(sys.argv[1], x=x)
    attempt("npz member", lambda: load_npz(sys.argv[1]))
''')


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory):
    npz = tmp_path_factory.mktemp("oom") / "in.npz"
    done = subprocess.run([sys.executable, "-c", SCENARIOS, str(npz)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    return {name: (kind, message) for name, kind, message in map(json.loads, done.stdout.splitlines())}


@pytest.mark.parametrize("name, expected", [
    ("interp node", "out of memory: evaluating %{} (scale) -> tensor<16777216xf32> needs 64.0 MiB"),
    ("llvm output", "out of memory: output 'y' tensor<16777216xf32> of @chain needs 64.0 MiB"),
    ("llvm scratch", "out of memory: scratch buffer 0 of @chain (for %{}) needs 64.0 MiB"),
    ("fold-constants", "pass 'fold-constants' (application 1): out of memory: evaluating %{} (pos_encoding) "
                       "-> tensor<1x256x256x256xf32> needs 64.0 MiB"),
    ("synthetic inputs", "out of memory: synthetic input 'x0' [1, 512, 512, 96] float32 needs 96.0 MiB"),
    ("input conversion", "out of memory: input 'x' as contiguous float32 [16777216] needs 64.0 MiB"),
    ("npz member", "out of memory: array 'x' of inputs file {} needs 64.0 MiB"),
])
def test_out_of_memory_names_what_and_how_much(scenarios, name, expected):
    kind, message = scenarios[name]
    assert kind == "OutOfMemoryError", (kind, message)
    head, _, tail = expected.partition("{}")
    assert message.startswith(head) and tail in message, message
    assert "this process may use at most " in message and "(RLIMIT_AS, ulimit -v)" in message


def test_run_refuses_a_graph_that_can_never_fit_before_making_random_inputs(tmp_path, monkeypatch, capsys):
    from rlxpy.cli import main
    import rlxpy.cli.run as cli
    from rlxpy.ir.textio import save_graph
    b = GraphBuilder("big")
    x = b.input("x", (1024, 1024))                                       # 4 MiB in, 4 MiB out
    b.output("y", b.scale(x, factor=2.0))
    save_graph(b.build(), tmp_path / "big.rlx")
    monkeypatch.setattr(memory, "memory_limits", lambda: [Limit(6 << 20, "a test limit")])
    monkeypatch.setattr(cli, "random_inputs", lambda *a: pytest.fail("random inputs made before compile refused"))
    assert main(["run", str(tmp_path / "big.rlx")]) == 2
    assert capsys.readouterr().err == ("rlxpy run: error: a call of @big needs 8.0 MiB (inputs 4.0 MiB, outputs 4.0 MiB), "
                                       "more than this process may ever use: 6.0 MiB (a test limit); refused at compile "
                                       "time, before allocating anything\n")


def test_cli_memory_error_anywhere_is_one_line(monkeypatch, capsys):
    import rlxpy.cli.fpn_neck as cli

    def fails(cfg):
        raise MemoryError("Unable to allocate 3.00 GiB for an array with shape (805306368,) and data type float32")
    monkeypatch.setattr(cli, "build_fpn_neck_ir", fails)
    from rlxpy.cli import main
    assert main(["fpn-neck", "--config", "tiny", "--image-size", "64"]) == 2
    assert capsys.readouterr().err == ("rlxpy fpn-neck: error: out of memory (Unable to allocate 3.00 GiB for an array "
                                       "with shape (805306368,) and data type float32); RLXPY_TRACEBACK=1 shows where\n")
