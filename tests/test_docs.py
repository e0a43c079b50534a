"""docs/codegen.md stays true to the code: its micro-kernel example runs and lowers a matmul, and
its relu example is what the files hold."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
DOC = (ROOT / "docs" / "codegen.md").read_text()


def blocks(after: str) -> list[str]:
    section = DOC[DOC.index(after):]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_micro_kernel_example_runs(tmp_path):
    code = blocks("## How to add a micro-kernel")[0]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "RLXPY_CACHE_DIR": str(tmp_path / "cache")}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert re.search(r"%\S+ +matmul +native .*\(rule small_n, 2 parallel iterations\)", done.stdout), done.stdout


def test_the_relu_example_is_the_code():
    code = blocks("## How to add an op")[0]
    parts = re.split(r"^# (rlxpy/\S+)\n", code, flags=re.M)[1:]
    assert [p for p in parts[::2]] == ["rlxpy/ir/ops/pointwise.py", "rlxpy/interp/rules/pointwise.py", "rlxpy/codegen/emitters.py"]
    for path, snippet in zip(parts[::2], parts[1::2]):
        assert snippet.strip() in (ROOT / path).read_text(), path
