"""Reading and writing files with errors that name the file, checks of paths before any work, and
bfloat16 safetensors data.

A path that is not a regular file (a directory, a named pipe, a device such as /dev/zero) is
refused for reading with what it is, before it is opened: opening a FIFO would wait for a writer,
and reading /dev/zero never ends.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import zipfile
from pathlib import Path

import numpy as np

from .errors import RlxError
from .memory import out_of_memory

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def regular_file(path: str | os.PathLike, what: str, error: type[RlxError] = RlxError) -> Path:
    """`path` if it names a regular file (symbolic links followed), else `error` saying what it is."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        if p.is_symlink():
            raise error(f"{what} file {path}: a symbolic link to {os.readlink(p)}, which does not exist") from None
        raise error(f"{what} file {path}: not found") from None
    except OSError as e:
        raise error(f"{what} file {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "a special file")
        raise error(f"{what} file {path}: is {kind}, not a regular file")
    return p


def check_writable(path: str | os.PathLike, option: str, suffix: str | None = None) -> Path:
    """Check, before any work, that `path` can be written as a file: its directory exists and is
    writable, it is not a directory, and (if given) its name ends in `suffix`."""
    p = Path(path)
    if suffix is not None and p.suffix != suffix:
        raise RlxError(f"{option} {path}: the file name must end in {suffix}")
    if p.is_dir():
        raise RlxError(f"{option} {path}: is a directory; expected a file name")
    parent = p.parent
    if not parent.exists():
        raise RlxError(f"{option} {path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise RlxError(f"{option} {path}: {parent} is not a directory")
    target = p if p.exists() else parent
    if not os.access(target, os.W_OK):
        raise RlxError(f"{option} {path}: {'file' if target is p else 'directory'} {target} is not writable")
    return p


def check_creatable_dir(path: str | os.PathLike, option: str) -> Path:
    """Check, before any work, that directory `path` exists and is writable, or can be created."""
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise RlxError(f"{option} {path}: exists and is not a directory")
        if not os.access(p, os.W_OK):
            raise RlxError(f"{option} {path}: directory is not writable")
        return p
    ancestor = p.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise RlxError(f"{option} {path}: cannot be created, {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK):
        raise RlxError(f"{option} {path}: cannot be created, directory {ancestor} is not writable")
    return p


def load_npz(path: str, what: str = "inputs") -> dict[str, np.ndarray]:
    """All arrays of an npz file, or an `RlxError` naming the file."""
    p = regular_file(path, what)
    try:
        with np.load(p, allow_pickle=False) as data:
            return {k: _read_member(data, k, f"array '{k}' of {what} file {path}") for k in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise RlxError(f"{what} file {path}: not a readable .npz file ({e})") from None


def _read_member(data, key: str, what: str) -> np.ndarray:
    try:
        return data[key]
    except MemoryError as e:
        member = data.zip.getinfo(f"{key}.npy") if f"{key}.npy" in data.zip.namelist() else None
        raise out_of_memory(what, member.file_size if member else 0, e) from None


def save_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Write `arrays` to exactly `path` (numpy alone would append .npz to a name without it)."""
    p = Path(path)
    if not p.parent.is_dir():
        raise RlxError(f"cannot write {path}: directory {p.parent} does not exist")
    try:
        with open(p, "wb") as f:
            np.savez(f, **arrays)
    except OSError as e:
        raise RlxError(f"cannot write {path}: {e.strerror or e}") from None


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
