"""A disk cache of object code, keyed by everything that changes it.

The key is a SHA-256 of the LLVM IR text (shapes and attributes are baked into it; constant data
never is: kernels receive constants by pointer, so one entry serves any weights), the LLVM and
llvmlite versions, the triple, the CPU name and feature string, the optimisation level and this
file's format version.

An entry is `MAGIC, format, key, payload length, SHA-256 of the payload, payload` with the payload
holding the defined symbol names and the object code. It is written to a temporary file in the
same directory and renamed over the final name (`os.replace` is atomic), so concurrent compilers
of one graph both succeed and a reader sees a whole entry or none. A truncated or corrupt entry
fails the header or checksum test and is recompiled; it is never handed to LLVM. A cache that
cannot be read or written is reported by a warning and compilation goes on without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from .target import Host

MAGIC = b"RLXPYOBJ"
FORMAT = 1
HEADER = struct.Struct("<8sI32sQ32s")          # magic, format, key, payload length, payload sha256
SUFFIX = ".rlxobj"


def default_cache_dir() -> Path:
    """$RLXPY_CACHE_DIR, else $XDG_CACHE_HOME/rlxpy, else ~/.cache/rlxpy."""
    env = os.environ.get("RLXPY_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "rlxpy"


def cache_key(ir_text: str, machine: Host) -> str:
    h = hashlib.sha256()
    h.update(f"rlxpy-object-cache {FORMAT}\n{machine.cache_identity()}\n".encode())
    h.update(ir_text.encode())
    return h.hexdigest()


@dataclass(frozen=True)
class Entry:
    object_code: bytes
    symbols: tuple[str, ...]


class ObjectCache:
    """Object code by key under one directory (its `llvm/` subdirectory)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory) / "llvm"

    def path(self, key: str) -> Path:
        return self.directory / f"{key}{SUFFIX}"

    def load(self, key: str) -> tuple[Entry | None, str]:
        """(entry, status): status is "hit", "miss", or "corrupt (why)" (then the entry is None)."""
        path = self.path(key)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None, "miss"
        except OSError as e:
            _warn(f"cannot read cache entry {path}: {e}")
            return None, "miss"
        try:
            return _decode(data, key), "hit"
        except ValueError as e:
            return None, f"corrupt ({e})"

    def store(self, key: str, entry: Entry) -> bool:
        data = _encode(entry, key)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{key[:16]}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, self.path(key))
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        except OSError as e:
            _warn(f"cannot write the object cache under {self.directory}: {e}; compiling without it")
            return False
        return True


def _encode(entry: Entry, key: str) -> bytes:
    meta = json.dumps({"symbols": list(entry.symbols)}).encode()
    payload = struct.pack("<I", len(meta)) + meta + entry.object_code
    return HEADER.pack(MAGIC, FORMAT, bytes.fromhex(key), len(payload), hashlib.sha256(payload).digest()) + payload


def _decode(data: bytes, key: str) -> Entry:
    if len(data) < HEADER.size:
        raise ValueError(f"truncated header: {len(data)} bytes")
    magic, fmt, stored_key, length, digest = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError("not an rlxpy object cache entry")
    if fmt != FORMAT:
        raise ValueError(f"format {fmt}, expected {FORMAT}")
    if stored_key != bytes.fromhex(key):
        raise ValueError("entry was written for another key")
    payload = data[HEADER.size:]
    if len(payload) != length:
        raise ValueError(f"truncated: payload of {len(payload)} bytes, header says {length}")
    if hashlib.sha256(payload).digest() != digest:
        raise ValueError("checksum mismatch")
    (meta_len,) = struct.unpack_from("<I", payload)
    meta = json.loads(payload[4:4 + meta_len])
    return Entry(bytes(payload[4 + meta_len:]), tuple(meta["symbols"]))


def _warn(message: str) -> None:
    warnings.warn(f"rlxpy: {message}", RuntimeWarning, stacklevel=4)
