"""Helpers shared by the subcommands: parsing sizes and lists, checksums."""

from __future__ import annotations

import argparse

import numpy as np

from ..errors import RlxError
from ..files import load_npz, save_npz  # noqa: F401  (re-exported for the subcommands)


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


def seed(text: str) -> int:
    """An argparse type: numpy's generators take seeds >= 0, so say so at the option."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seed {text!r}: expected an integer >= 0") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"seed {value} is negative: expected an integer >= 0")
    return value


def checksum(array: np.ndarray) -> str:
    """A short digest of an array's bytes, for comparing runs by eye."""
    import hashlib
    return hashlib.sha256(memoryview(np.ascontiguousarray(array)).cast("B")).hexdigest()[:12]


def mean_abs(array: np.ndarray, chunk: int = 1 << 20) -> float:
    """mean(|x|) in float64, a chunk at a time: no temporary as large as the array."""
    flat = array.reshape(-1)
    total = sum(float(np.abs(flat[i:i + chunk]).sum(dtype=np.float64)) for i in range(0, flat.size, chunk))
    return total / max(flat.size, 1)
