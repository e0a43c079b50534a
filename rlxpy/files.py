"""Reading and writing .npz files with errors that name the file."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .errors import RlxError


def load_npz(path: str, what: str = "inputs") -> dict[str, np.ndarray]:
    """All arrays of an npz file, or an `RlxError` naming the file."""
    p = Path(path)
    if not p.is_file():
        raise RlxError(f"{what} file {path}: not found")
    try:
        with np.load(p, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise RlxError(f"{what} file {path}: not a readable .npz file ({e})") from None


def save_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    p = Path(path)
    if not p.parent.is_dir():
        raise RlxError(f"cannot write {path}: directory {p.parent} does not exist")
    np.savez(p, **arrays)
