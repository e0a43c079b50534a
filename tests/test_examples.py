"""Every script in examples/ runs, and prints the facts it demonstrates.

Each example runs as a user runs it (a fresh interpreter, in an empty directory, its own object
cache); its output is parsed and checked against independent expectations: the float64 reference
neck of tests/reference.py, the graph the script describes, the pass's effect.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import reference
import rlxpy
from rlxpy.models.sam2 import FpnNeckConfig, synthetic_fpn_neck_weights

EXAMPLES = Path(__file__).parent.parent / "examples"


def run_example(name: str, *args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RLXPY_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("RLXPY_DEBUG", None)
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def graph_blocks(text: str) -> list[str]:
    """Every `graph @name { ... }` printed in `text`, as its own string."""
    return re.findall(r"^graph @\w+ \{\n.*?^\}$", text, flags=re.M | re.S)


def test_every_example_is_checked():
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    checked = {name for name, obj in globals().items() if name.startswith("test_") and hasattr(obj, "example")}
    assert scripts == {globals()[t].example for t in checked}


def example(name):
    def mark(fn):
        fn.example = name
        return fn
    return mark


# -- fpn_neck_from_safetensors.py ------------------------------------------------------------------

VARIANT, SIZE = "tiny", 128
LINE = re.compile(r"^  (features_\d|pos_\d) +\[([\d, ]+)\] +mean ([+-]\d\.\d+)  std (\d\.\d+)$")


def neck_lines(stdout: str) -> dict[str, tuple[list[int], float, float]]:
    found = {}
    for line in stdout.splitlines():
        m = LINE.match(line)
        if m:
            found[m[1]] = ([int(d) for d in m[2].split(",")], float(m[3]), float(m[4]))
    return found


def check_neck_output(stdout: str, weights: dict[str, np.ndarray]) -> None:
    cfg = FpnNeckConfig.for_hiera(VARIANT, image_size=(SIZE, SIZE), batch=1)
    assert cfg.describe() in stdout
    # the 8 tensors the example says it read, with the shapes of the checkpoint
    read = re.findall(r"^  (image_encoder\.neck\.convs\.\d\.conv\.(?:weight|bias)) +\[([\d, ]+)\]$", stdout, re.M)
    assert {k: [int(d) for d in s.split(",")] for k, s in read} == {k: list(v.shape) for k, v in weights.items()}
    assert re.search(r"^read 8 tensors from ", stdout, re.M)
    # the example's inputs, rebuilt; its printed statistics against the float64 reference
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(cfg.input_shape(i), dtype=np.float32) for i in range(4)]
    expected = reference.fpn_neck(xs, weights)
    printed = neck_lines(stdout)
    assert list(printed) == [f"{kind}_{i}" for i in range(4) for kind in ("features", "pos")]
    for name, (shape, mean, std) in printed.items():
        ref = expected[name]
        assert shape == list(ref.shape), name
        assert abs(mean - ref.mean()) <= 1e-5, (name, mean, ref.mean())
        assert abs(std - ref.std()) <= 1e-5, (name, std, ref.std())


@example("fpn_neck_from_safetensors.py")
def test_fpn_neck_from_a_checkpoint(tmp_path, rng):
    cfg = FpnNeckConfig.for_hiera(VARIANT, image_size=(SIZE, SIZE), batch=1)
    weights = {}
    for j, cin in enumerate(cfg.backbone_channel_list):
        weights[cfg.weight_key(j)] = rng.uniform(-0.1, 0.1, (256, cin, 1, 1)).astype(np.float32)
        weights[cfg.bias_key(j)] = rng.uniform(-0.5, 0.5, 256).astype(np.float32)
    other = {"image_encoder.trunk.patch_embed.proj.weight": rng.standard_normal((96, 3, 7, 7)).astype(np.float32)}
    path = tmp_path / "sam2_like.safetensors"
    save_file({**weights, **other}, str(path))             # a whole-model file: other keys are ignored
    out = run_example("fpn_neck_from_safetensors.py", str(path), "--variant", VARIANT, "--image-size", str(SIZE),
                      tmp_path=tmp_path).stdout
    assert "wrote random weights" not in out and "trunk" not in out
    check_neck_output(out, weights)


@example("fpn_neck_from_safetensors.py")
def test_fpn_neck_without_a_checkpoint(tmp_path):
    out = run_example("fpn_neck_from_safetensors.py", "--variant", VARIANT, "--image-size", str(SIZE),
                      tmp_path=tmp_path).stdout
    assert re.search(r"^wrote random weights to .*\.safetensors$", out, re.M)
    cfg = FpnNeckConfig.for_hiera(VARIANT, image_size=(SIZE, SIZE), batch=1)
    check_neck_output(out, synthetic_fpn_neck_weights(cfg, seed=0))


# -- hand_built_graph.py ---------------------------------------------------------------------------

@example("hand_built_graph.py")
def test_hand_built_graph(tmp_path):
    out = run_example("hand_built_graph.py", tmp_path=tmp_path).stdout
    # the printed textual IR parses back to the graph the docstring describes
    (text,) = graph_blocks(out)
    graph = rlxpy.parse_graph(text)
    assert rlxpy.print_graph(graph).strip() == text.strip()
    assert [n.op for n in graph] == ["input", "input", "param", "param", "matmul", "bias_add", "transpose",
                                     "upsample_add", "scale", "pos_encoding"]
    assert [n.attrs.get("mode") for n in graph if n.op == "upsample_add"] == ["bilinear"]
    assert [n.attrs["factor"] for n in graph if n.op == "scale"] == [0.5]
    assert {name: list(t.shape) for name, t in graph.output_types.items()} == {"y": [2, 32, 8, 12], "pe": [2, 32, 8, 12]}
    # interpreter against plain numpy
    m = re.search(r"^y \[2, 32, 8, 12\], pe \[2, 32, 8, 12\]; max \|rlxpy - numpy\| = (\S+)$", out, re.M)
    assert m and float(m[1]) < 1e-5, out
    # native code: one fused kernel on the fast rule, nothing on the interpreter, same results
    assert "after the passes: input, input, const, const, fused_matmul, const\n" in out
    assert re.search(r"1 native, 0 alias, 0 on the interpreter", out)
    assert re.search(r"^  %\w+ +fused_matmul +native +\S+ +\(rule nchw_microkernel, ", out, re.M), out
    m = re.search(r"^max \|llvm - interp\| / max \|interp\| = (\S+)$", out, re.M)
    assert m and float(m[1]) < 1e-5, out


# -- write_a_pass.py -------------------------------------------------------------------------------

@example("write_a_pass.py")
def test_write_a_pass(tmp_path):
    done = run_example("write_a_pass.py", tmp_path=tmp_path)
    # the instrument's dumps (stderr): after merge-scales one scale by 2 * 0.25, after dce only it
    assert re.findall(r"^// -----// IR Dump After (\w+) \(([\w-]+)\) //----- //$", done.stderr, re.M) == [
        ("MergeScales", "merge-scales"), ("DeadCodeElimination", "dce")]
    merged, final = (rlxpy.parse_graph(t) for t in graph_blocks(done.stderr))
    assert [n.op for n in merged] == ["input", "scale", "scale"]
    assert [n.op for n in final] == ["input", "scale"]
    (scale,) = [n for n in final if n.op == "scale"]
    assert scale.attrs["factor"] == 0.5 and scale.operands == ("x",)
    assert 'loc("merge-scales")' in graph_blocks(done.stderr)[1]
    # the remark, and difftest's verdict on 50 random graphs
    assert "[merge-scales] applied: %1: merged with %0" in done.stdout.splitlines()
    assert "merge-scales kept the meaning of 50 of 50 random graphs" in done.stdout.splitlines()
