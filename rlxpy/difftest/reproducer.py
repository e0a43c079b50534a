"""Reproducer folders: everything needed to replay a failing case.

    DIR/case.rlx          the graph (params bound: weights are consts)
    DIR/case.safetensors  its large constants
    DIR/inputs.npz        the inputs
    DIR/case.json         pipeline, target, seed and the mismatch seen
    DIR/COMMAND           the commands that replay, bisect and reduce it
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import RlxError
from ..files import load_npz
from ..ir.graph import Graph
from ..ir.textio import load_graph, save_graph


@dataclass
class Reproducer:
    graph: Graph
    inputs: dict[str, np.ndarray]
    pipeline: str
    target: str
    seed: int | None = None
    mismatch: str = ""


def write_reproducer(directory: str | Path, case: Reproducer) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    save_graph(case.graph, d / "case.rlx")
    np.savez(d / "inputs.npz", **case.inputs)
    meta = {k: v for k, v in asdict(case).items() if k not in ("graph", "inputs")}
    (d / "case.json").write_text(json.dumps(meta, indent=2) + "\n")
    q = f"'{case.pipeline}'"
    (d / "COMMAND").write_text(
        f"rlxpy replay {d}\n"
        f"rlxpy bisect {d / 'case.rlx'} --inputs {d / 'inputs.npz'} --pipeline {q} --target {case.target}\n"
        f"rlxpy reduce {d / 'case.rlx'} --inputs {d / 'inputs.npz'} --pipeline {q} --target {case.target} -o {d / 'reduced.rlx'}\n"
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
    inputs = load_npz(str(d / "inputs.npz"))
    return Reproducer(load_graph(d / "case.rlx"), inputs, meta["pipeline"], meta["target"],
                      meta.get("seed"), meta.get("mismatch", ""))

