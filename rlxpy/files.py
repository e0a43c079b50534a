"""Reading and writing .npz files with errors that name the file; bfloat16 safetensors data."""

from __future__ import annotations

import json
import struct
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


def read_bf16(path: str | Path, key: str) -> np.ndarray:
    """A bfloat16 tensor of a safetensors file as float32: numpy has no bfloat16, so the raw 16-bit
    words are read and widened."""
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
        entry = header[key]
        start, end = entry["data_offsets"]
        words = np.fromfile(fh, dtype="<u2", count=(end - start) // 2, offset=start)
    return (words.astype(np.uint32) << 16).view(np.float32).reshape(entry["shape"])
