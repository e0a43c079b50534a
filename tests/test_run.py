"""`rlxpy run`: any saved graph, with params and inputs from files (or seeded random inputs); the
checks of the Python API, each a one-line error naming the input or param and the file."""

import numpy as np
import pytest
from safetensors.numpy import save_file

from rlxpy import GraphBuilder
from rlxpy.cli import main
from rlxpy.difftest.generate import nonzero_data
from rlxpy.ir.textio import save_graph
from conftest import scaled_error


def block(tmp_path):
    """x [2, 5, 6, 7] -> (x @ w + b) to NCHW, halved; plus a const-scaled copy of x: two outputs."""
    b = GraphBuilder("block")
    x = b.input("x", (2, 5, 6, 7))
    w, bias = b.param("proj.weight", (7, 9)), b.param("proj.bias", (9,))
    y = b.transpose(b.bias_add(b.matmul(x, w), bias), perm=(0, 3, 1, 2))
    b.output("y", b.scale(y, factor=0.5))
    b.output("z", b.matmul(x, b.const(np.linspace(-1, 1, 49, dtype=np.float32).reshape(7, 7))))
    save_graph(b.build(), tmp_path / "block.rlx")         # the 7x7 const goes to block.safetensors
    return tmp_path / "block.rlx"


def reference(x, w, bias):
    y = np.einsum("bhwc,cn->bnhw", x.astype(np.float64), w) + bias[None, :, None, None]
    return {"y": 0.5 * y, "z": x.astype(np.float64) @ np.linspace(-1, 1, 49).reshape(7, 7)}


def files(tmp_path, rng):
    params = {"proj.weight": rng.standard_normal((7, 9)).astype(np.float32),
              "proj.bias": rng.uniform(0.5, 1.5, 9).astype(np.float32)}
    save_file(params, str(tmp_path / "w.safetensors"))
    x = rng.standard_normal((2, 5, 6, 7)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    return params, x


@pytest.mark.parametrize("target", ["interp", "llvm"])
def test_run_a_saved_graph_with_params_and_inputs(tmp_path, capsys, rng, target):
    graph = block(tmp_path)
    params, x = files(tmp_path, rng)
    extra = ["--compare", "interp", "--no-cache"] if target == "llvm" else []
    code = main(["run", str(graph), "--params", str(tmp_path / "w.safetensors"), "--inputs", str(tmp_path / "in.npz"),
                 "--target", target, "--out", str(tmp_path / "out.npz"), *extra])
    out = capsys.readouterr().out
    assert code == 0
    assert f"rlxpy run: @block from {graph}: " in out and f"inputs   {tmp_path / 'in.npz'}: x [2, 5, 6, 7]" in out
    assert f"params   {tmp_path / 'w.safetensors'}: 2 tensor(s)" in out
    got = np.load(tmp_path / "out.npz")
    ref = reference(x, params["proj.weight"], params["proj.bias"])
    assert sorted(got.files) == ["y", "z"]
    for name, expected in ref.items():
        assert got[name].dtype == np.float32 and scaled_error(got[name], expected) < 1e-5
    from rlxpy.cli.common import checksum
    assert f"{checksum(got['y'])}" in out and f"{checksum(got['z'])}" in out      # printed per output
    if target == "llvm":
        assert "native" in out and "fused_matmul  native" in out                  # where each node ran
        assert "compare with interp" in out
    else:
        assert "every node runs on the numpy interpreter" in out


def test_without_inputs_it_runs_on_seeded_random_inputs_and_says_so(tmp_path, capsys, rng):
    graph = block(tmp_path)
    params, _ = files(tmp_path, rng)
    for seed in ("3", "4"):
        assert main(["run", str(graph), "--params", str(tmp_path / "w.safetensors"), "--seed", seed,
                     "--out", str(tmp_path / f"{seed}.npz")]) == 0
        assert f"inputs   random (seed {seed}; uniform in ±[0.25, 1], never zero): x [2, 5, 6, 7]" in capsys.readouterr().out
    x = nonzero_data((2, 5, 6, 7), 3)
    assert np.all(np.abs(x) >= 0.25)
    got = np.load(tmp_path / "3.npz")
    assert scaled_error(got["y"], reference(x, params["proj.weight"], params["proj.bias"])["y"]) < 1e-5
    assert not np.array_equal(got["y"], np.load(tmp_path / "4.npz")["y"])


def test_a_graph_without_params_needs_no_params_file(tmp_path, capsys):
    b = GraphBuilder("tiny")
    b.output("y", b.scale(b.input("a", (3, 4)), factor=3.0))
    save_graph(b.build(), tmp_path / "tiny.rlx")
    a = nonzero_data((3, 4), 9)
    np.savez(tmp_path / "a.npz", a=a.astype(np.float64))          # another float dtype is converted
    assert main(["run", str(tmp_path / "tiny.rlx"), "--inputs", str(tmp_path / "a.npz"), "--out", str(tmp_path / "o.npz")]) == 0
    assert "params   none (the graph has no params)" in capsys.readouterr().out
    np.testing.assert_allclose(np.load(tmp_path / "o.npz")["y"], 3.0 * a, rtol=1e-6)


def bad_files(tmp_path, rng):
    params, x = files(tmp_path, rng)
    np.savez(tmp_path / "missing.npz", y=x)
    np.savez(tmp_path / "extra.npz", x=x, x2=x)
    np.savez(tmp_path / "shape.npz", x=x[:, :4])
    np.savez(tmp_path / "ints.npz", x=x.astype(np.int32))
    save_file({"proj.weight": params["proj.weight"]}, str(tmp_path / "missing.safetensors"))
    save_file({**params, "proj.gain": params["proj.bias"]}, str(tmp_path / "extra.safetensors"))
    save_file({**params, "proj.bias": params["proj.weight"]}, str(tmp_path / "shape.safetensors"))
    save_file({**params, "proj.bias": np.arange(9, dtype=np.int64)}, str(tmp_path / "ints.safetensors"))
    nan = params["proj.weight"].copy()
    nan[1, 2] = np.nan
    save_file({**params, "proj.weight": nan}, str(tmp_path / "nan.safetensors"))
    (tmp_path / "junk.safetensors").write_bytes(b"\x01" * 3)
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07")


W = ["--params", "{tmp}/w.safetensors"]


@pytest.mark.parametrize("args, message", [
    (["{tmp}/model.onnx"], "graph file {tmp}/model.onnx: unknown format '.onnx'; rlxpy run reads .rlx (rlxpy textual IR"),
    (["{tmp}/absent.rlx"], "graph file {tmp}/absent.rlx: not found"),
    (["{g}"], "graph @block in {g} has 2 unbound param(s) ('proj.weight', 'proj.bias'): give their values with --params"),
    (["{g}", "--params", "{tmp}/absent.safetensors"], "params file {tmp}/absent.safetensors: not found"),
    (["{g}", "--params", "{tmp}/junk.safetensors"], "params file {tmp}/junk.safetensors: not a readable safetensors file"),
    (["{g}", "--params", "{tmp}/missing.safetensors"],
     "params file {tmp}/missing.safetensors: missing param 'proj.bias' (expected a float tensor of shape [9])"),
    (["{g}", "--params", "{tmp}/extra.safetensors"],
     "params file {tmp}/extra.safetensors: unknown param 'proj.gain'; graph @block has 'proj.weight', 'proj.bias'"),
    (["{g}", "--params", "{tmp}/shape.safetensors"], "param 'proj.bias' in {tmp}/shape.safetensors: expected shape [9], got [7, 9]"),
    (["{g}", "--params", "{tmp}/ints.safetensors"], "param 'proj.bias' in {tmp}/ints.safetensors: dtype I64 is not a float type"),
    (["{g}", "--params", "{tmp}/nan.safetensors"], "param 'proj.weight' in {tmp}/nan.safetensors: 1 value(s) are NaN or Inf"),
    (["{g}", *W, "--inputs", "{tmp}/absent.npz"], "inputs file {tmp}/absent.npz: not found"),
    (["{g}", *W, "--inputs", "{tmp}/missing.npz"], "inputs file {tmp}/missing.npz: unknown input 'y'; this graph takes 'x'"),
    (["{g}", *W, "--inputs", "{tmp}/extra.npz"], "inputs file {tmp}/extra.npz: unknown input 'x2'; this graph takes 'x'"),
    (["{g}", *W, "--inputs", "{tmp}/shape.npz"],
     "inputs file {tmp}/shape.npz: input 'x': wrong shape: expected shape [2, 5, 6, 7], got [2, 4, 6, 7]"),
    (["{g}", *W, "--inputs", "{tmp}/ints.npz"], "inputs file {tmp}/ints.npz: input 'x': dtype int32 is not a float type"),
    (["{g}", *W, "--seed", "-1"], "argument --seed: seed -1 is negative: expected an integer >= 0"),
    (["{g}", *W, "--dump-constants", "none"], "--dump-constants applies with --dump-dir only"),
    (["{g}", *W, "--load-pass-plugin", "{tmp}/absent.py"], "pass plugin {tmp}/absent.py: file not found"),
    (["{g}", *W, "--strict"], "--strict applies to --target llvm only"),
    (["{g}", *W, "--target", "llvm", "--threads", "0"], "--threads must be a positive integer, got 0"),
    (["{g}", *W, "--pipeline", "fold,dce"], "unknown pass 'fold'"),
    (["{g}", *W, "--out", "{tmp}/no/dir/out.npz"], "--out {tmp}/no/dir/out.npz: directory {tmp}/no/dir does not exist"),
])
def test_bad_files_and_options_are_one_line(tmp_path, capsys, rng, args, message):
    graph = block(tmp_path)
    bad_files(tmp_path, rng)
    fill = lambda s: s.replace("{tmp}", str(tmp_path)).replace("{g}", str(graph))   # noqa: E731
    assert main(["run", *map(fill, args)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("rlxpy run: error: "), err
    assert fill(message) in err


def test_missing_input_names_the_file(tmp_path, capsys, rng):
    b = GraphBuilder("two")
    b.output("y", b.matmul(b.input("a", (2, 3)), b.input("b", (3, 4))))
    save_graph(b.build(), tmp_path / "two.rlx")
    np.savez(tmp_path / "a.npz", a=rng.standard_normal((2, 3)))
    assert main(["run", str(tmp_path / "two.rlx"), "--inputs", str(tmp_path / "a.npz")]) == 2
    assert capsys.readouterr().err == (f"rlxpy run: error: inputs file {tmp_path / 'a.npz'}: missing input 'b': "
                                       f"expected a float32 array of shape [3, 4]\n")
