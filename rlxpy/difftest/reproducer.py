"""Reproducer folders: everything needed to replay a failing case.

    DIR/case.rlx          the graph (params bound: weights are consts)
    DIR/case.safetensors  its large constants
    DIR/inputs.npz        the inputs
    DIR/case.json         pipeline, target, seed, the mismatch seen, and the pass plugins loaded
    DIR/COMMAND           the commands that replay, bisect and reduce it

`load_reproducer` (and so `rlxpy replay DIR`) loads the recorded plugins (a file's absolute path, or
a module name) itself.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import RlxError
from ..files import load_npz
from ..ir.graph import Graph
from ..ir.textio import load_graph, save_graph
from ..passes.plugins import PluginError, load_pass_plugin, loaded_plugins


@dataclass
class Reproducer:
    graph: Graph
    inputs: dict[str, np.ndarray]
    pipeline: str
    target: str
    seed: int | None = None
    mismatch: str = ""
    plugins: list[str] = field(default_factory=lambda: [p.spec for p in loaded_plugins()])


def write_reproducer(directory: str | Path, case: Reproducer) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    save_graph(case.graph, d / "case.rlx")
    np.savez(d / "inputs.npz", **case.inputs)
    meta = {k: v for k, v in asdict(case).items() if k not in ("graph", "inputs")}
    (d / "case.json").write_text(json.dumps(meta, indent=2) + "\n")
    q = f"'{case.pipeline}'"
    plugins = "".join(f" --load-pass-plugin {shlex.quote(spec)}" for spec in case.plugins)
    (d / "COMMAND").write_text(
        f"rlxpy replay {d}\n"
        f"rlxpy bisect {d / 'case.rlx'} --inputs {d / 'inputs.npz'} --pipeline {q} --target {case.target}{plugins}\n"
        f"rlxpy reduce {d / 'case.rlx'} --inputs {d / 'inputs.npz'} --pipeline {q} --target {case.target}{plugins} "
        f"-o {d / 'reduced.rlx'}\n"
    )
    return d


def load_reproducer(directory: str | Path) -> Reproducer:
    d = Path(directory)
    if not (d / "case.json").is_file():
        raise RlxError(f"{d} is not a reproducer folder (no case.json)")
    try:
        meta = json.loads((d / "case.json").read_text())
    except json.JSONDecodeError as e:
        raise RlxError(f"{d / 'case.json'}: not valid JSON ({e})") from None
    missing = [k for k in ("pipeline", "target") if k not in meta]
    if missing:
        raise RlxError(f"{d / 'case.json'}: missing '{missing[0]}'")
    plugins = meta.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise RlxError(f"{d / 'case.json'}: 'plugins' must be a list of plugin files or module names")
    for spec in plugins:                      # before anything reads the pipeline
        try:
            load_pass_plugin(spec)
        except PluginError as e:
            raise PluginError(f"{e} (recorded in {d / 'case.json'})") from None
    inputs = load_npz(str(d / "inputs.npz"))
    return Reproducer(load_graph(d / "case.rlx"), inputs, meta["pipeline"], meta["target"],
                      meta.get("seed"), meta.get("mismatch", ""), plugins)

