"""Tensor types: a static shape and an element type.

Printed MLIR style, `tensor<1x256x64x64xf32>`; a rank-0 tensor is `tensor<f32>`.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class TensorType:
    shape: tuple[int, ...]
    dtype: str = "f32"

    def __post_init__(self) -> None:
        shape = tuple(self.shape)
        for d in shape:
            if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
                raise ValueError(f"tensor dimensions must be positive integers, got {list(shape)}")
        object.__setattr__(self, "shape", tuple(int(d) for d in shape))
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown element type {self.dtype!r}; expected one of {sorted(DTYPES)}")

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

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
