"""Golden tests in the style of LLVM lit: every `.rlx` file under tests/filecheck/ is a test.

A file holds the IR, the commands to run on it and the expected output:

    // RUN: rlxpy graph %s | filecheck %s
    // RUN: not rlxpy graph %s 2>&1 | filecheck %s --check-prefix ERR
    // CHECK: graph @g {

Each RUN line (a trailing `\\` continues it on the next RUN line) is run by bash with pipefail,
after substituting `%s` (this file), `%S` (its directory), `%t` (a temporary path for this file's
outputs, such as `%t.rlx`), `%T` (a temporary directory) and `%%` (a literal %). `not CMD` succeeds
when CMD fails. The `rlxpy` and `filecheck` found first on PATH are the ones installed beside the
running Python, so a fresh virtual environment tests itself. Files under a directory named
`Inputs` are data for other tests, not tests.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent / "filecheck"
BIN = Path(sys.executable).parent
PRELUDE = "not() { ! \"$@\"; }\n"
SUBSTITUTION = re.compile(r"%([%sStT])")


def golden_files() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.rlx") if "Inputs" not in p.relative_to(ROOT).parts)


def run_lines(path: Path) -> list[str]:
    lines, pending = [], None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = re.search(r"\bRUN:(.*)$", line)
        if m is None:
            if pending is not None:
                raise AssertionError(f"{path}:{number}: the RUN line before ends with '\\' but this is no RUN line")
            continue
        command = m.group(1).strip()
        if command.endswith("\\"):
            pending = (pending or "") + command[:-1] + " "
            continue
        lines.append((pending or "") + command)
        pending = None
    if pending is not None:
        raise AssertionError(f"{path}: the last RUN line ends with '\\'")
    return lines


def substitute(command: str, path: Path, tmp: Path) -> str:
    values = {"%": "%", "s": shlex.quote(str(path)), "S": shlex.quote(str(path.parent)),
              "t": shlex.quote(str(tmp / path.stem)), "T": shlex.quote(str(tmp))}
    return SUBSTITUTION.sub(lambda m: values[m.group(1)], command)


@pytest.mark.parametrize("path", golden_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_filecheck(path, tmp_path):
    for tool in ("rlxpy", "filecheck"):
        assert (BIN / tool).exists(), f"{tool} is not installed beside {sys.executable} (pip install -e '.[test]')"
    commands = run_lines(path)
    assert commands, f"{path} has no RUN: line"
    env = {k: v for k, v in os.environ.items() if k != "RLXPY_TRACEBACK"}
    env["PATH"] = str(BIN) + os.pathsep + env.get("PATH", "")
    for command in commands:
        script = substitute(command, path, tmp_path)
        done = subprocess.run(["bash", "-o", "pipefail", "-c", PRELUDE + script], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            pytest.fail(f"RUN: {command}\n$ {script}\nexit status {done.returncode}\n"
                        f"--- stdout ---\n{done.stdout}--- stderr ---\n{done.stderr}", pytrace=False)


def test_substitutions_and_continuations(tmp_path):
    f = tmp_path / "a b.rlx"
    f.write_text("// RUN: echo %s %S \\\n// RUN:   %t.x %T 100%%\n// CHECK: x\n// RUN: true\n")
    assert run_lines(f) == ["echo %s %S  %t.x %T 100%%", "true"]
    q = lambda p: shlex.quote(str(p))  # noqa: E731
    assert substitute(run_lines(f)[0], f, tmp_path / "o") == (
        f"echo {q(f)} {q(tmp_path)}  {q(tmp_path / 'o' / 'a b')}.x {q(tmp_path / 'o')} 100%")
    assert q(f).startswith("'")          # the space is quoted


def test_the_driver_fails_on_a_wrong_check_and_honours_not(tmp_path):
    good = tmp_path / "good.rlx"
    good.write_text("// RUN: rlxpy graph %s | filecheck %s\n// RUN: not false\n"
                    "graph @g {\n  %x = input {name = \"x\"} : tensor<2xf32>\n  output @y = %x\n}\n"
                    "// CHECK: %x = input {name = \"x\"} : tensor<2xf32>\n")
    test_filecheck(good, tmp_path)
    wrong = tmp_path / "wrong.rlx"
    wrong.write_text(good.read_text().replace("// CHECK: %x = input {name = \"x\"} : tensor<2xf32>",
                                              "// CHECK: %x = input {name = \"x\"} : tensor<3xf32>"))
    with pytest.raises(pytest.fail.Exception, match=r"(?s)RUN: rlxpy graph %s \| filecheck %s.*exit status 1"):
        test_filecheck(wrong, tmp_path)
    negated = tmp_path / "negated.rlx"
    negated.write_text("// RUN: not true\n")
    with pytest.raises(pytest.fail.Exception, match="exit status 1"):
        test_filecheck(negated, tmp_path)
