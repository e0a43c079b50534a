"""Helpers shared by the subcommands: reading and writing npz files, parsing sizes and lists."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import RlxError


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


def parse_image_size(text: str) -> tuple[int, int]:
    """`1024` or `HEIGHTxWIDTH` such as `512x768`."""
    parts = text.lower().split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        dims = []
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2:
        raise RlxError(f"--image-size {text!r}: expected N or HEIGHTxWIDTH, e.g. 1024 or 512x768")
    return dims[0], dims[1]


def parse_int_list(text: str, option: str) -> tuple[int, ...]:
    """`2,3` -> (2, 3); an empty string or `none` -> ()."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        return tuple(int(t) for t in text.split(","))
    except ValueError:
        raise RlxError(f"{option} {text!r}: expected comma-separated integers, e.g. 2,3") from None


def checksum(array: np.ndarray) -> str:
    """A short digest of an array's bytes, for comparing runs by eye."""
    import hashlib
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:12]
