"""Tensor types: a static shape and an element type.

Printed MLIR style, `tensor<1x256x64x64xf32>`; a rank-0 tensor is `tensor<f32>`.

Every type obeys one size limit, defined here and only here: at most `MAX_RANK` dimensions
(numpy's own limit) and at most `MAX_BYTES` bytes. The byte limit keeps every element and byte
offset a kernel forms, a few tiles past the end included (prefetches, edge masks), well inside a
signed 64-bit integer, so no graph that verifies can make native code index out of bounds by
overflow. Element counts and byte sizes are exact Python ints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Element types the IR can name. The ops and backends accept f32 only for now; the others exist so
# that a graph carrying them is rejected with a clear "dtype mismatch" instead of being unreadable.
DTYPES: dict[str, np.dtype] = {
    "f16": np.dtype(np.float16),
    "f32": np.dtype(np.float32),
    "f64": np.dtype(np.float64),
    "i32": np.dtype(np.int32),
    "i64": np.dtype(np.int64),
}

MAX_RANK = 64          # numpy's limit on an array's dimensions
MAX_BYTES = 2**62      # half the signed 64-bit range: room for any offset a kernel forms past the end
LIMIT_TEXT = f"at most {MAX_RANK} dimensions and 2**62 bytes"


class TypeLimitError(ValueError):
    """A tensor type over the size limit: more than MAX_RANK dimensions or MAX_BYTES bytes."""


def check_rank(rank: int) -> None:
    if rank > MAX_RANK:
        raise TypeLimitError(f"a tensor of rank {rank} is over the limit: a tensor has {LIMIT_TEXT}")


def check_limits(shape: tuple[int, ...], dtype: str = "f32") -> None:
    """Raise `TypeLimitError` if a tensor of this (positive) shape is over the size limit."""
    check_rank(len(shape))
    itemsize = DTYPES[dtype].itemsize
    numel = math.prod(shape)
    if numel * itemsize > MAX_BYTES:
        dims = "".join(f"{d}x" for d in shape)
        raise TypeLimitError(f"tensor<{dims}{dtype}> has {numel} elements ({numel * itemsize} bytes), over the "
                             f"limit: a tensor has {LIMIT_TEXT}")


@dataclass(frozen=True)
class TensorType:
    shape: tuple[int, ...]
    dtype: str = "f32"

    def __post_init__(self) -> None:
        shape = tuple(self.shape)
        check_rank(len(shape))      # before looking at each dimension: the shape may be huge
        for d in shape:
            if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
                raise ValueError(f"tensor dimensions must be positive integers, got {list(shape)}")
        shape = tuple(int(d) for d in shape)
        object.__setattr__(self, "shape", shape)
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown element type {self.dtype!r}; expected one of {sorted(DTYPES)}")
        check_limits(shape, self.dtype)

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def np_dtype(self) -> np.dtype:
        return DTYPES[self.dtype]

    @property
    def nbytes(self) -> int:
        return self.numel * self.np_dtype.itemsize

    def __str__(self) -> str:
        dims = "".join(f"{d}x" for d in self.shape)
        return f"tensor<{dims}{self.dtype}>"

    @staticmethod
    def of(array: np.ndarray) -> "TensorType":
        """The type of a numpy array (its dtype must be one the IR names)."""
        for name, dt in DTYPES.items():
            if array.dtype == dt:
                return TensorType(tuple(array.shape), name)
        raise ValueError(f"numpy dtype {array.dtype} has no IR element type")


def f32(*shape: int) -> TensorType:
    return TensorType(tuple(shape), "f32")
