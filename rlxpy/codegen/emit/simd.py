"""Vector helpers on top of `FunctionBuilder`: vector types, loads and stores, splats, shuffles,
counted loops that carry values in registers, and an in-register transpose.

Everything here emits plain LLVM vector IR (`<N x float>`, `shufflevector`, `llvm.fma.vNf32`);
LLVM picks the instructions (vbroadcastss, vpermt2ps, vfmadd231ps) for the target machine.
"""

from __future__ import annotations

from typing import Callable, Sequence

import llvmlite.ir as ir

from .builder import F32, I64, FunctionBuilder, Int

I32 = ir.IntType(32)


def vec(lanes: int) -> ir.VectorType:
    return ir.VectorType(F32, lanes)


def vec_ptr(k: FunctionBuilder, base: ir.Value, offset: Int, lanes: int) -> ir.Value:
    return k.b.bitcast(k.ptr(base, offset), vec(lanes).as_pointer())


def vload(k: FunctionBuilder, base: ir.Value, offset: Int, lanes: int, align: int = 4) -> ir.Value:
    return k.b.load(vec_ptr(k, base, offset, lanes), align=align)


def vstore(k: FunctionBuilder, value: ir.Value, base: ir.Value, offset: Int, align: int = 4,
           streaming: bool = False) -> None:
    """Store a vector; `streaming` marks it non-temporal (written around the caches, no read for
    ownership); that needs `align` to be the vector's size, which the caller must guarantee."""
    st = k.b.store(value, vec_ptr(k, base, offset, value.type.count), align=align)
    if streaming:
        st.set_metadata("nontemporal", k.module.add_metadata([ir.Constant(I32, 1)]))


def prefetch(k: FunctionBuilder, base: ir.Value, offset: Int) -> None:
    """Hint that the cache line holding base[offset] will be read soon. A prefetch never faults
    and does not change what the program computes, so `offset` may point past the array: the
    address is computed without `inbounds` (plain wrapping arithmetic, never poison)."""
    fn = k.module.globals.get("llvm.prefetch.p0i8")
    if fn is None:
        i8p = ir.IntType(8).as_pointer()
        fn = ir.Function(k.module, ir.FunctionType(ir.VoidType(), [i8p, I32, I32, I32]), name="llvm.prefetch.p0i8")
    ptr = k.b.bitcast(k.b.gep(base, [k.i64(offset)]), ir.IntType(8).as_pointer())
    k.b.call(fn, [ptr, ir.Constant(I32, 0), ir.Constant(I32, 3), ir.Constant(I32, 1)])


def mask(indices: Sequence[int]) -> ir.Constant:
    return ir.Constant(ir.VectorType(I32, len(indices)), [ir.Constant(I32, int(i)) for i in indices])


def splat(k: FunctionBuilder, scalar: ir.Value, lanes: int) -> ir.Value:
    """A vector whose every lane is `scalar` (a load feeding this becomes vbroadcastss)."""
    undef = ir.Constant(vec(lanes), ir.Undefined)
    one = k.b.insert_element(undef, scalar, ir.Constant(I32, 0))
    return k.b.shuffle_vector(one, undef, mask([0] * lanes))


def constant_vector(values: Sequence[float]) -> ir.Constant:
    return ir.Constant(vec(len(values)), [FunctionBuilder.f32(v) for v in values])


def shuffle(k: FunctionBuilder, a: ir.Value, b: ir.Value | None, indices: Sequence[int]) -> ir.Value:
    """shufflevector(a, b, indices): index i < len(a) takes a[i], else b[i - len(a)]."""
    if b is None:
        b = ir.Constant(a.type, ir.Undefined)
    return k.b.shuffle_vector(a, b, mask(indices))


def fma(k: FunctionBuilder, a: ir.Value, b: ir.Value, c: ir.Value) -> ir.Value:
    """a * b + c with one rounding (llvm.fma: exact on every target, one instruction with FMA)."""
    return k.b.call(k.intrinsic("llvm.fma", a.type, 3), [a, b, c])


def counted_loop(k: FunctionBuilder, trips: Int, carried: list[ir.Value],
                 body: Callable[[ir.Value, list[ir.Value]], list[ir.Value]], name: str = "k") -> list[ir.Value]:
    """`for i in range(trips): carried = body(i, carried)` with the carried values in phis (so they
    live in registers); returns the final values. A trip count known only at run time (an IR
    value) gets a guard, and the results merge the values from before the loop."""
    runtime = not isinstance(trips, int)
    if not runtime and trips <= 0:
        return list(carried)
    b = k.b
    pre = b.block
    loop = k.fn.append_basic_block(f"{name}.loop")
    done = k.fn.append_basic_block(f"{name}.done")
    if runtime:
        b.cbranch(b.icmp_signed(">", trips, k.i64(0)), loop, done)
    else:
        b.branch(loop)
    b.position_at_end(loop)
    i = b.phi(I64, name=name)
    phis = [b.phi(v.type, name=f"{name}.acc") for v in carried]
    i.add_incoming(k.i64(0), pre)
    for p, v in zip(phis, carried):
        p.add_incoming(v, pre)
    updated = body(i, list(phis))
    nxt = b.add(i, k.i64(1), name=f"{name}.next", flags=["nsw", "nuw"])
    latch = b.block
    i.add_incoming(nxt, latch)
    for p, v in zip(phis, updated):
        p.add_incoming(v, latch)
    b.cbranch(b.icmp_unsigned("<", nxt, k.i64(trips)), loop, done)
    b.position_at_end(done)
    if not runtime:
        return updated
    merged = []
    for before, after in zip(carried, updated):
        m = b.phi(before.type, name=f"{name}.out")
        m.add_incoming(before, pre)
        m.add_incoming(after, latch)
        merged.append(m)
    return merged


def transpose(k: FunctionBuilder, rows: list[ir.Value]) -> list[ir.Value]:
    """The transpose of a square block held as `n` vectors of `n` lanes (n a power of two).

    log2(n) rounds; each pairs vector i with vector i + n/2 and interleaves their low halves
    (-> slot 2i) and high halves (-> slot 2i+1): one two-source shuffle per vector per round.
    """
    n = len(rows)
    if n & (n - 1) or rows[0].type.count != n:
        raise ValueError(f"transpose needs n vectors of n lanes with n a power of two, got {n} x {rows[0].type.count}")
    half = n // 2
    lo = [j for i in range(half) for j in (i, n + i)]
    hi = [j for i in range(half, n) for j in (i, n + i)]
    v = list(rows)
    for _ in range(n.bit_length() - 1):
        new: list[ir.Value] = [None] * n  # type: ignore[list-item]
        for i in range(half):
            new[2 * i] = shuffle(k, v[i], v[i + half], lo)
            new[2 * i + 1] = shuffle(k, v[i], v[i + half], hi)
        v = new
    return v
