"""Type rules shared by the declarations: broadcasting, matmul, bias, transpose, upsample shapes."""

from __future__ import annotations

from ..opdef import OpTypeError
from ..types import TensorType, TypeLimitError


def _fmt(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def result_of(shape: tuple[int, ...], what: str) -> TensorType:
    """An f32 result type, or an `OpTypeError` saying that `what` makes it too large."""
    try:
        return TensorType(tuple(shape))
    except TypeLimitError as e:
        raise OpTypeError(f"{what}: {e}") from None


def require_f32(types: list[TensorType], names: tuple[str, ...]) -> None:
    for t, name in zip(types, names):
        if t.dtype != "f32":
            raise OpTypeError(f"dtype mismatch: operand '{name}' is {t.dtype}, expected f32")


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        da = a[-i] if i <= len(a) else 1
        db = b[-i] if i <= len(b) else 1
        if da != db and 1 not in (da, db):
            raise OpTypeError(f"batch dimensions {_fmt(a)} and {_fmt(b)} do not broadcast")
        out.append(max(da, db))
    return tuple(reversed(out))


def matmul_type(a: TensorType, b: TensorType) -> TensorType:
    if a.rank < 2 or b.rank < 2:
        raise OpTypeError(f"operands must have rank >= 2, got {a} and {b}")
    (m, k), (k2, n) = a.shape[-2:], b.shape[-2:]
    if k != k2:
        raise OpTypeError(
            f"contraction mismatch: 'a' {a} has {k} columns but 'b' {b} has {k2} rows"
        )
    return result_of(_broadcast(a.shape[:-2], b.shape[:-2]) + (m, n), f"the product of {a} and {b}")


def bias_type(x: TensorType, bias: TensorType, axis: int) -> TensorType:
    if not -x.rank <= axis < x.rank:
        raise OpTypeError(f"axis {axis} is out of range for rank {x.rank}")
    want = x.shape[axis]
    if bias.shape != (want,):
        raise OpTypeError(f"'bias' must have shape [{want}] (axis {axis} of {x}), got {bias}")
    return x


def transpose_type(x: TensorType, perm: tuple[int, ...]) -> TensorType:
    if sorted(perm) != list(range(x.rank)):
        raise OpTypeError(f"perm {list(perm)} is not a permutation of 0..{x.rank - 1}")
    return TensorType(tuple(x.shape[p] for p in perm))


def upsample_add_type(x: TensorType, coarse: TensorType) -> TensorType:
    if x.rank < 2 or coarse.rank != x.rank:
        raise OpTypeError(f"operands must have the same rank >= 2, got {x} and {coarse}")
    want = x.shape[:-2] + (x.shape[-2] // 2, x.shape[-1] // 2)
    if x.shape[-2] % 2 or x.shape[-1] % 2 or coarse.shape != want:
        raise OpTypeError(
            f"'coarse' must be half of 'x' {x} in its last two dimensions, "
            f"expected shape {_fmt(want)} with even x dims, got {coarse}"
        )
    return x
