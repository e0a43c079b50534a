"""Hardening of the command line: every mistake below is one line `rlxpy <cmd>: error: ...` with exit
status 2, found before any work, saying what was expected."""

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import rlxpy
from rlxpy.cli import main

SMALL = ["--config", "tiny", "--image-size", "64x96"]


def one_line_error(capsys, command: str) -> str:
    captured = capsys.readouterr()
    err = captured.err
    assert err.count("\n") == 1 and err.startswith(f"rlxpy {command}: error: "), err
    return err.strip()[len(f"rlxpy {command}: error: "):]


# -- the version and the environment ---------------------------------------------------------------

def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"rlxpy {rlxpy.__version__}\n"
    assert rlxpy.__version__ == importlib.metadata.version("rlxpy")       # one place: the package's own
    done = subprocess.run([str(Path(sys.executable).parent / "rlxpy"), "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and f"rlxpy {rlxpy.__version__}." in done.stdout


@pytest.mark.parametrize("level", ["7", "-1", "2.0", "loud"])
def test_debug_level_out_of_range(monkeypatch, capsys, level):
    monkeypatch.setenv("RLXPY_DEBUG", level)
    assert main(["fpn-neck", *SMALL]) == 2
    assert one_line_error(capsys, "fpn-neck") == f"RLXPY_DEBUG={level!r}: expected a level 0, 1, 2 or 3"
    from rlxpy import ConfigError
    from rlxpy.config import debug_level
    with pytest.raises(ConfigError):
        debug_level()
