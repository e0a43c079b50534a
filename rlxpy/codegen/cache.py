"""A disk cache of object code, keyed by everything that determines it (see `key`).

The key is computed from the lowering plan, before any IR is built, so a hit builds none: the
entry carries what only emission knows, namely each kernel's symbol, extent and cost, and the
module's LLVM IR as generated (compressed), shown by `exe.llvm_ir` and optimised again on demand.

An entry is `MAGIC, format, key, payload length, SHA-256 of the payload, payload` with the payload
holding a JSON header (kernel symbols, section sizes), the object code and the zlib-compressed IR. It is
written to a temporary file (0600) in the same directory (0700 when rlxpy makes it) and renamed over
the final name (`os.replace` is atomic), so concurrent compilers of one graph both succeed and a
reader sees a whole entry or none.

An entry is input the process did not make, so reading one trusts nothing: it is opened without
following a symbolic link and without blocking, must be a regular file, and is read as the fixed
header and then exactly the payload length that header declares, within `MAX_PAYLOAD`; then the
checksum is tested and the object code goes through `objcheck` before LLVM sees it. Anything wrong
(a FIFO, a directory, a link, a short or overlong file, a bad checksum, object code the loader
could choke on) makes the entry a miss with the status "corrupt (why)"; it is recompiled and
replaced. The checksum detects damage, not forgery: whoever can write the cache directory can run
code as its user. Entries of an older format simply miss (the format is part of the key). A cache
that cannot be written is reported by a warning and compilation goes on without it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import struct
import tempfile
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .. import config
from ..errors import CodegenError
from .objcheck import ObjectCodeError, check_object
from .target import host

MAGIC = b"RLXPYOBJ"
FORMAT = 4
HEADER = struct.Struct("<8sI32sQ32s")          # magic, format, key, payload length, payload sha256
SUFFIX = ".rlxobj"
MAX_PAYLOAD = 256 << 20                        # far above any real entry; bounds what a bad one costs
MAX_IR_TEXT = 256 << 20
FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
              (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def default_cache_dir() -> Path:
    """$RLXPY_CACHE_DIR, else $XDG_CACHE_HOME/rlxpy, else ~/.cache/rlxpy."""
    return config.cache_dir()


def entry_key(module_key: str) -> str:
    """The file key of a module key under this entry format."""
    return hashlib.sha256(f"rlxpy-object-cache {FORMAT}\n{module_key}".encode()).hexdigest()


@dataclass
class Entry:
    """Object code of one module, the symbols of its kernels (everything else about a kernel is in
    its record from selection, `kernel.Kernel`), and its IR as generated (kept compressed until asked)."""

    object_code: bytes
    symbols: tuple[str, ...]
    _ir_text: str | None = field(default=None, repr=False)
    _ir_zlib: bytes | None = field(default=None, repr=False)
    _ir_size: int = field(default=0, repr=False)         # bytes of IR text in _ir_zlib

    @property
    def ir_text(self) -> str:
        if self._ir_text is None:
            self._ir_text = _inflate(self._ir_zlib, self._ir_size)
        return self._ir_text

    @property
    def ir_zlib(self) -> bytes:
        if self._ir_zlib is None:
            text = self._ir_text.encode()
            self._ir_zlib, self._ir_size = zlib.compress(text, 1), len(text)
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
            data = _read_entry(path)
        except (FileNotFoundError, NotADirectoryError):
            return None, "miss"
        except _Refused as e:
            return None, f"corrupt ({e})"
        try:
            return _decode(data, key), "hit"
        except ValueError as e:
            return None, f"corrupt ({e})"

    def store(self, key: str, entry: Entry) -> bool:
        data = _encode(entry, key)
        try:
            # private by default: entries are code this process will run
            self.directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.directory.mkdir(mode=0o700, exist_ok=True)
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


class _Refused(Exception):
    """The entry's file cannot be read as an entry; the message says why."""


def _read_entry(path: Path) -> bytes:
    """The entry's bytes: the fixed header, then exactly the payload it declares, from a regular file.

    O_NOFOLLOW: a symbolic link (to /dev/zero, to a directory, dangling) is refused, not followed;
    O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer forever.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _Refused("a symbolic link, not a regular file") from None
        raise _Refused(f"cannot be opened: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in FILE_KINDS if test(st.st_mode)), "not a regular file")
            raise _Refused(f"{kind}, not a regular file")
        header = _read_exactly(fd, HEADER.size)
        if len(header) < HEADER.size:
            raise _Refused(f"truncated header: {len(header)} bytes")
        length = HEADER.unpack(header)[3]
        if header[:8] == MAGIC and length > MAX_PAYLOAD:
            raise _Refused(f"declares a payload of {length} bytes, over the limit of {MAX_PAYLOAD}")
        payload = _read_exactly(fd, min(length, MAX_PAYLOAD) if header[:8] == MAGIC else 0)
        # one byte more than declared tells an overlong file without reading the rest of it
        extra = _read_exactly(fd, 1)
    except OSError as e:
        raise _Refused(f"cannot be read: {e.strerror}") from None
    finally:
        os.close(fd)
    return header + payload + extra


def _read_exactly(fd: int, n: int) -> bytes:
    """Up to n bytes: fewer only at the end of the file."""
    parts, got = [], 0
    while got < n:
        part = os.read(fd, min(n - got, 1 << 20))
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _encode(entry: Entry, key: str) -> bytes:
    ir_zlib = entry.ir_zlib
    meta = json.dumps({"symbols": list(entry.symbols),
                       "object_bytes": len(entry.object_code), "ir_bytes": len(ir_zlib),
                       "ir_text_bytes": entry._ir_size}).encode()
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
    if len(payload) < length:
        raise ValueError(f"truncated: payload of {len(payload)} bytes, header says {length}")
    if len(payload) > length:
        raise ValueError(f"data after the payload of {length} bytes the header declares")
    if hashlib.sha256(payload).digest() != digest:
        raise ValueError("checksum mismatch")
    try:
        (meta_len,) = struct.unpack_from("<I", payload)
        if 4 + meta_len > len(payload):
            raise ValueError(f"a header of {meta_len} bytes in a payload of {len(payload)}")
        meta = json.loads(payload[4:4 + meta_len])
        symbols = meta["symbols"]
        if not isinstance(symbols, list) or not all(isinstance(x, str) for x in symbols):
            raise ValueError("symbols must be a list of strings")
        symbols = tuple(symbols)
        start = 4 + meta_len
        end = start + int(meta["object_bytes"])
        ir_size = int(meta["ir_text_bytes"])
        if int(meta["object_bytes"]) < 0 or end + int(meta["ir_bytes"]) != len(payload):
            raise ValueError("section sizes do not add up")
        if not 0 <= ir_size <= MAX_IR_TEXT:
            raise ValueError(f"IR text of {ir_size} bytes declared, over the limit of {MAX_IR_TEXT}")
    except (struct.error, ValueError, KeyError, TypeError) as e:   # a well-formed file from a bug
        raise ValueError(f"bad header: {e}") from None
    object_code = bytes(payload[start:end])
    if symbols:
        try:
            check_object(object_code, symbols, host().triple)
        except ObjectCodeError as e:
            raise ValueError(f"object code: {e}") from None
    elif object_code:
        raise ValueError("object code but no kernels")
    return Entry(object_code, symbols, _ir_zlib=bytes(payload[end:]), _ir_size=ir_size)


def _inflate(data: bytes, size: int) -> str:
    """Exactly `size` bytes of IR text out of `data`, and never more (the entry says how many)."""
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(data, size + 1)       # one byte more tells a longer text
    except zlib.error as e:
        raise CodegenError(f"the object cache entry's LLVM IR does not decompress: {e}") from None
    if len(text) != size or not inflater.eof or inflater.unused_data:
        raise CodegenError(f"the object cache entry's LLVM IR is damaged: {len(text)} bytes where "
                           f"its header says {size}")
    return text.decode("utf-8", "replace")


def _warn(message: str) -> None:
    warnings.warn(f"rlxpy: {message}", RuntimeWarning, stacklevel=4)
