"""A disk cache of object code, keyed by everything that determines it (see `key`).

The key is computed from the lowering plan, before any IR is built, so a hit builds none: the
entry carries what only emission knows, namely each kernel's symbol, extent and cost, and the
module's LLVM IR as generated (compressed), shown by `exe.llvm_ir` and optimised again on demand.

An entry is `MAGIC, format, key, payload length, SHA-256 of the payload, payload` with the payload
holding a JSON header (kernels, section sizes), the object code and the zlib-compressed IR. It is
written to a temporary file in the same directory and renamed over the final name (`os.replace` is
atomic), so concurrent compilers of one graph both succeed and a reader sees a whole entry or none.
A truncated or corrupt entry fails the header or checksum test and is recompiled; it is never handed
to LLVM. Entries of an older format simply miss (the format is part of the key). A cache that cannot
be read or written is reported by a warning and compilation goes on without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .. import config

MAGIC = b"RLXPYOBJ"
FORMAT = 2
HEADER = struct.Struct("<8sI32sQ32s")          # magic, format, key, payload length, payload sha256
SUFFIX = ".rlxobj"


def default_cache_dir() -> Path:
    """$RLXPY_CACHE_DIR, else $XDG_CACHE_HOME/rlxpy, else ~/.cache/rlxpy."""
    return config.cache_dir()


def entry_key(module_key: str) -> str:
    """The file key of a module key under this entry format."""
    return hashlib.sha256(f"rlxpy-object-cache {FORMAT}\n{module_key}".encode()).hexdigest()


@dataclass(frozen=True)
class KernelInfo:
    symbol: str
    extent: int
    cost: float


@dataclass
class Entry:
    """Object code of one module, its kernels, and its IR as generated (kept compressed until asked)."""

    object_code: bytes
    kernels: tuple[KernelInfo, ...]
    _ir_text: str | None = field(default=None, repr=False)
    _ir_zlib: bytes | None = field(default=None, repr=False)

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(k.symbol for k in self.kernels)

    @property
    def ir_text(self) -> str:
        if self._ir_text is None:
            self._ir_text = zlib.decompress(self._ir_zlib).decode()
        return self._ir_text

    @property
    def ir_zlib(self) -> bytes:
        if self._ir_zlib is None:
            self._ir_zlib = zlib.compress(self._ir_text.encode(), 1)
        return self._ir_zlib


class ObjectCache:
    """Object code by key under one directory (its `llvm/` subdirectory)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory) / "llvm"

    def path(self, key: str) -> Path:
        return self.directory / f"{entry_key(key)}{SUFFIX}"

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
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{entry_key(key)[:16]}.", suffix=".tmp")
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
    ir_zlib = entry.ir_zlib
    meta = json.dumps({"kernels": [[k.symbol, k.extent, k.cost] for k in entry.kernels],
                       "object_bytes": len(entry.object_code), "ir_bytes": len(ir_zlib)}).encode()
    payload = struct.pack("<I", len(meta)) + meta + entry.object_code + ir_zlib
    return HEADER.pack(MAGIC, FORMAT, bytes.fromhex(entry_key(key)), len(payload),
                       hashlib.sha256(payload).digest()) + payload


def _decode(data: bytes, key: str) -> Entry:
    if len(data) < HEADER.size:
        raise ValueError(f"truncated header: {len(data)} bytes")
    magic, fmt, stored_key, length, digest = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError("not an rlxpy object cache entry")
    if fmt != FORMAT:
        raise ValueError(f"format {fmt}, expected {FORMAT}")
    if stored_key != bytes.fromhex(entry_key(key)):
        raise ValueError("entry was written for another key")
    payload = data[HEADER.size:]
    if len(payload) != length:
        raise ValueError(f"truncated: payload of {len(payload)} bytes, header says {length}")
    if hashlib.sha256(payload).digest() != digest:
        raise ValueError("checksum mismatch")
    try:
        (meta_len,) = struct.unpack_from("<I", payload)
        meta = json.loads(payload[4:4 + meta_len])
        kernels = tuple(KernelInfo(str(s), int(e), float(c)) for s, e, c in meta["kernels"])
        start = 4 + meta_len
        end = start + int(meta["object_bytes"])
        if end + int(meta["ir_bytes"]) != len(payload):
            raise ValueError("section sizes do not add up")
    except (struct.error, ValueError, KeyError, TypeError) as e:   # a well-formed file from a bug
        raise ValueError(f"bad header: {e}") from None
    return Entry(bytes(payload[start:end]), kernels, _ir_zlib=bytes(payload[end:]))


def _warn(message: str) -> None:
    warnings.warn(f"rlxpy: {message}", RuntimeWarning, stacklevel=4)
