"""Pass plugins: `--load-pass-plugin FILE.py|MODULE` on opt, difftest, bisect, reduce and replay; the
passes join pipelines and --list-passes; errors name the plugin; reproducers record the plugins and
replay loads them by itself."""

import json
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from rlxpy import GraphBuilder, PassError
from rlxpy.cli import main
from rlxpy.ir.textio import load_graph, save_graph
from rlxpy.passes import PASSES, PIPELINES, PassManager, load_pass_plugin, loaded_plugins, plugins

EXAMPLE = Path(__file__).parent.parent / "examples" / "write_a_pass.py"

# A planted miscompile as a plugin: every scale's factor is off by one.
BUMP = '''
from dataclasses import dataclass
from typing import ClassVar
from rlxpy.passes import Pass, register

@register
@dataclass(frozen=True)
class BumpScales(Pass):
    name: ClassVar[str] = "test-bump-scales"
    summary: ClassVar[str] = "adds 1 to every scale factor (a planted bug)"

    def run(self, graph, ctx):
        nodes = [n.with_(attrs={"factor": n.attrs["factor"] + 1.0}, origin=self.name) if n.op == "scale" else n
                 for n in graph.nodes]
        return graph.with_nodes(nodes) if any(n.op == "scale" for n in graph.nodes) else graph
'''

RAISES = '''
from dataclasses import dataclass
from typing import ClassVar
from rlxpy.passes import Pass, register

@register
@dataclass(frozen=True)
class Crashes(Pass):
    name: ClassVar[str] = "test-plugin-crashes"

    def run(self, graph, ctx):
        raise RuntimeError("planted crash")
'''


@pytest.fixture(autouse=True)
def clean_registry():
    """Each test starts and ends with rlxpy's own passes only, as a fresh process would."""
    saved_passes, saved_pipelines, saved_loaded = dict(PASSES), dict(PIPELINES), dict(plugins._LOADED)
    saved_modules = set(sys.modules)
    yield
    PASSES.clear()
    PASSES.update(saved_passes)
    PIPELINES.clear()
    PIPELINES.update(saved_pipelines)
    plugins._LOADED.clear()
    plugins._LOADED.update(saved_loaded)
    for name in set(sys.modules) - saved_modules:
        if name.startswith("rlxpy_pass_plugin_") or name.startswith("myplugins"):
            del sys.modules[name]


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def two_scales(path: Path) -> Path:
    b = GraphBuilder("s")
    b.output("y", b.scale(b.scale(b.input("x", (2, 3)), factor=2.0), factor=0.25))
    save_graph(b.build(), path)
    return path


def test_the_example_pass_replays_on_the_command_line(tmp_path, capsys):
    graph = two_scales(tmp_path / "s.rlx")
    assert main(["opt", str(graph), "-p", "merge-scales,dce"]) == 2         # not known without the plugin
    assert "unknown pass 'merge-scales'" in capsys.readouterr().err
    assert main(["opt", str(graph), "-p", "merge-scales,dce", "--load-pass-plugin", str(EXAMPLE)]) == 0
    out, err = capsys.readouterr()
    assert "merge-scales kept the meaning" not in out + err                   # the demo did not run
    assert '%x = input {name = "x"}' in out
    assert 'scale(%x) {factor = 0.5} : tensor<2x3xf32> loc("merge-scales")' in out
    assert main(["opt", "--list-passes", "--load-pass-plugin", str(EXAMPLE)]) == 0
    listed = capsys.readouterr().out
    assert f"merge-scales    scale(scale(x, a), b) -> scale(x, a * b) (plugin {EXAMPLE.resolve()})" in listed
    assert "min-factor: float = 0.0 (>= 0.0)" in listed


def test_a_plugin_pass_has_option_ranges_and_print_ir_names(tmp_path, capsys):
    graph = two_scales(tmp_path / "s.rlx")
    plugin = ["--load-pass-plugin", str(EXAMPLE)]
    assert main(["opt", str(graph), "-p", "merge-scales{min-factor=-1}", *plugin]) == 2
    assert capsys.readouterr().err == ("rlxpy opt: error: pass 'merge-scales': option 'min-factor' = -1.0 is out of "
                                       "range: expected a number >= 0.0\n")
    assert main(["opt", str(graph), "-p", "merge-scales,dce", "--print-ir-after", "merge-scales", *plugin]) == 0
    out, err = capsys.readouterr()
    assert "merge-scales" in err and 'scale(%x) {factor = 0.5}' in err
    assert main(["opt", str(graph), "-p", "merge-scales", "--print-ir-after", "merge-scale", *plugin]) == 2
    message = capsys.readouterr().err
    assert message.startswith("rlxpy opt: error: print-ir-after: unknown pass 'merge-scale'; known passes: ")
    assert "merge-scales" in message


def test_a_module_plugin_loads_once(tmp_path, monkeypatch, capsys):
    (tmp_path / "myplugins").mkdir()
    (tmp_path / "myplugins" / "__init__.py").write_text("")
    write(tmp_path / "myplugins" / "scales.py", BUMP)
    monkeypatch.syspath_prepend(str(tmp_path))
    first = load_pass_plugin("myplugins.scales")
    assert first.spec == "myplugins.scales" and first.passes == ("test-bump-scales",)
    assert load_pass_plugin("myplugins.scales") is first and loaded_plugins() == [first]
    graph = two_scales(tmp_path / "s.rlx")
    assert main(["opt", str(graph), "-p", "test-bump-scales", "--load-pass-plugin", "myplugins.scales"]) == 0
    out = capsys.readouterr().out
    assert "{factor = 3.0}" in out and "{factor = 1.25}" in out


def test_the_same_file_by_two_spellings_is_one_plugin(tmp_path, monkeypatch):
    plugin = write(tmp_path / "bump.py", BUMP)
    monkeypatch.chdir(tmp_path)
    a = load_pass_plugin("bump.py")
    assert a.spec == str(plugin.resolve())
    assert load_pass_plugin(str(plugin)) is a and loaded_plugins() == [a]


@pytest.mark.parametrize("source, message", [
    (None, "pass plugin {p}: file not found"),
    ("import no_such_module_anywhere\n",
     "pass plugin {p}: import failed: ModuleNotFoundError: No module named 'no_such_module_anywhere' (at plugin.py:1)"),
    ("x = 1\n\nraise RuntimeError('broken plugin')\n", "pass plugin {p}: import failed: RuntimeError: broken plugin (at plugin.py:3)"),
    ("def f(:\n", "pass plugin {p}: import failed: SyntaxError: "),
    ("import sys\nsys.exit(3)\n", "pass plugin {p}: import failed: SystemExit: 3 (at plugin.py:2)"),
    ("x = 1\n", "pass plugin {p}: registers no passes"),
    (BUMP.replace("test-bump-scales", "cse"),
     "pass plugin {p}: cannot register pass 'cse' (rlxpy_pass_plugin_plugin_"),
    (BUMP.replace("test-bump-scales", "my pass"), "its name 'my pass' is not one a pipeline can spell"),
    (BUMP.replace("test-bump-scales", "default"), "pass plugin {p}: pass 'default' has the name of a pipeline"),
])
def test_plugin_errors_are_one_line_naming_the_plugin(tmp_path, capsys, source, message):
    plugin = tmp_path / "plugin.py"
    if source is not None:
        plugin.write_text(source)
    graph = two_scales(tmp_path / "s.rlx")
    before = dict(PASSES)
    for command in (["opt", str(graph)], ["difftest", "--count", "1"], ["bisect", str(graph)],
                    ["reduce", str(graph), "-o", str(tmp_path / "r.rlx")]):
        assert main([*command, "--load-pass-plugin", str(plugin)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"rlxpy {command[0]}: error: "), err
        assert message.replace("{p}", str(plugin)) in err
    assert PASSES == before and not loaded_plugins()          # a failed plugin leaves nothing behind


def test_a_name_taken_by_another_plugin_names_both(tmp_path):
    load_pass_plugin(write(tmp_path / "one.py", BUMP))
    with pytest.raises(PassError, match=r"pass plugin .*two\.py: cannot register pass 'test-bump-scales' "
                                        r"\(rlxpy_pass_plugin_two_\w+\.BumpScales\): the name is already taken by "
                                        r"rlxpy_pass_plugin_one_\w+\.BumpScales"):
        load_pass_plugin(write(tmp_path / "two.py", BUMP))


def test_difftest_records_the_plugin_and_replay_loads_it_in_a_fresh_process(tmp_path, capsys):
    plugin = write(tmp_path / "bump.py", BUMP)
    pipeline = "test-bump-scales,default"
    code = main(["difftest", "--count", "30", "--pipeline", pipeline, "--target", "interp", "--no-reduce",
                 "--out", str(tmp_path / "failures"), "--load-pass-plugin", str(plugin)])
    out = capsys.readouterr().out
    assert code == 1 and "after pass test-bump-scales" in out
    folder = Path(out.split("reproducer: ")[1].splitlines()[0])
    assert json.loads((folder / "case.json").read_text())["plugins"] == [str(plugin.resolve())]
    command = (folder / "COMMAND").read_text().splitlines()
    assert command[0] == f"rlxpy replay {folder}"
    assert all(f"--load-pass-plugin {plugin.resolve()}" in line for line in command[1:])
    # a new process knows nothing of the plugin: replay loads it from case.json
    done = subprocess.run([sys.executable, "-m", "rlxpy", "replay", str(folder)], capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    assert f"replay: {folder}: after pass test-bump-scales" in done.stdout
    # bisect and reduce as COMMAND spells them
    bisect = shlex.split(command[1])[1:] + ["--target", "interp"]
    assert main(bisect) == 0
    assert "first bad pass application: (1) test-bump-scales" in capsys.readouterr().out
    reduce = shlex.split(command[2])[1:]
    assert main(reduce) == 0
    reduced = load_graph(folder / "reduced.rlx")
    assert len(reduced) < len(load_graph(folder / "case.rlx")) and reduced.of_op("scale")


def test_replay_names_a_recorded_plugin_that_is_gone(tmp_path, capsys):
    plugin = write(tmp_path / "bump.py", BUMP)
    main(["difftest", "--count", "30", "--pipeline", "test-bump-scales", "--target", "interp", "--no-reduce",
          "--out", str(tmp_path / "failures"), "--load-pass-plugin", str(plugin)])
    folder = Path(capsys.readouterr().out.split("reproducer: ")[1].splitlines()[0])
    plugins._LOADED.clear()
    del PASSES["test-bump-scales"]
    plugin.unlink()
    assert main(["replay", str(folder)]) == 2
    assert capsys.readouterr().err == (f"rlxpy replay: error: pass plugin {plugin.resolve()}: file not found "
                                       f"(recorded in {folder / 'case.json'})\n")


def test_pass_failure_reproducer_replays_with_its_plugins(tmp_path, capsys):
    crash = write(tmp_path / "crash.py", RAISES)
    load_pass_plugin(crash)
    with pytest.raises(PassError, match="failed: RuntimeError: planted crash; reproducer: "):
        PassManager("cse,test-plugin-crashes", reproducer_dir=tmp_path / "repro").run(load_graph(two_scales(tmp_path / "s.rlx")))
    path = tmp_path / "repro" / "reproducer-test-plugin-crashes.rlx"
    replay = [line for line in path.read_text().splitlines() if line.startswith("// replay: ")][0]
    assert replay == f"// replay: rlxpy opt {path.name} -p 'test-plugin-crashes' --load-pass-plugin {crash.resolve()}"
    plugins._LOADED.clear()
    del PASSES["test-plugin-crashes"]
    args = shlex.split(replay[len("// replay: "):])[1:]
    args[1] = str(path)
    assert main(args + ["--reproducer-dir", str(tmp_path / "again")]) == 2
    assert "pass 'test-plugin-crashes' (application 1) failed: RuntimeError: planted crash" in capsys.readouterr().err


def test_run_and_fpn_neck_take_plugins(tmp_path, capsys):
    graph = two_scales(tmp_path / "s.rlx")
    x = np.random.default_rng(5).uniform(0.5, 1.5, (2, 3)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    assert main(["run", str(graph), "--inputs", str(tmp_path / "x.npz"), "--pipeline", "merge-scales,dce",
                 "--load-pass-plugin", str(EXAMPLE), "--out", str(tmp_path / "y.npz")]) == 0
    assert "'merge-scales,dce' -> 2 nodes (1 input, 1 scale)" in capsys.readouterr().out
    np.testing.assert_allclose(np.load(tmp_path / "y.npz")["y"], 0.5 * x, rtol=1e-6)
    assert main(["fpn-neck", "--config", "tiny", "--image-size", "64", "--pipeline", "merge-scales,default",
                 "--load-pass-plugin", str(EXAMPLE)]) == 0
    assert "passes   'merge-scales,fold-constants,fuse-epilogue,cse,dce'" in capsys.readouterr().out
