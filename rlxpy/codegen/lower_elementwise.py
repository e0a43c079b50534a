"""Lowerings of the layout and elementwise ops: scale, bias_add, transpose, reshape."""

from __future__ import annotations

import math

from .emit import KernelBuilder, row_major_strides
from .registry import Alias, Kernel, lowering


@lowering("scale")
def scale(k: KernelBuilder) -> Kernel:
    n = k.out_type.numel
    factor = k.f32(k.attrs["factor"])
    k.define(extent=n)
    x, = k.ins
    with k.parallel_loop() as i:
        k.store(k.b.fmul(k.load(x, i), factor), k.out, i)
    return k.finish(cost=1)


@lowering("bias_add")
def bias_add(k: KernelBuilder) -> Kernel:
    shape = k.out_type.shape
    axis = k.attrs["axis"] % len(shape)
    outer, channels, inner = math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])
    if inner == 1:          # bias on the last axis: rows of `channels` elements, one bias each
        k.define(extent=outer)
        x, bias = k.ins
        with k.parallel_loop() as o:
            with k.loop(0, channels, name="c") as c:
                off = k.add(k.mul(o, channels), c)
                k.store(k.b.fadd(k.load(x, off), k.load(bias, c)), k.out, off)
        return k.finish(cost=channels)
    k.define(extent=outer * channels)  # rows of `inner` elements sharing one bias value
    x, bias = k.ins
    with k.parallel_loop() as r:
        bv = k.load(bias, k.rem(r, channels))
        with k.loop(0, inner, name="j") as j:
            off = k.add(k.mul(r, inner), j)
            k.store(k.b.fadd(k.load(x, off), bv), k.out, off)
    return k.finish(cost=inner)


def coalesce(shape: tuple[int, ...], perm: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The same transpose on fewer axes: size-1 axes dropped, runs of axes that stay adjacent merged.

    (B, H, W, C) with perm (0, 3, 1, 2) becomes (B, H*W, C) with perm (0, 2, 1).
    """
    kept = [p for p in perm if shape[p] != 1]
    if not kept:
        return (1,), (0,)
    in_axes = sorted(kept)
    renumber = {ax: i for i, ax in enumerate(in_axes)}
    groups: list[list[int]] = []
    for ax in (renumber[p] for p in kept):
        if groups and groups[-1][-1] + 1 == ax:
            groups[-1].append(ax)
        else:
            groups.append([ax])
    by_input = sorted(range(len(groups)), key=lambda g: groups[g][0])
    in_shape = tuple(math.prod(shape[in_axes[a]] for a in groups[g]) for g in by_input)
    new_perm = tuple(by_input.index(g) for g in range(len(groups)))
    return in_shape, new_perm


@lowering("transpose")
def transpose(k: KernelBuilder) -> Kernel:
    in_shape, perm = coalesce(k.in_types[0].shape, k.attrs["perm"])
    if len(perm) == 1:      # nothing moves: a copy
        n = in_shape[0]
        k.define(extent=n)
        x, = k.ins
        with k.parallel_loop() as i:
            k.store(k.load(x, i), k.out, i)
        return k.finish(cost=1)
    in_strides = row_major_strides(in_shape)
    out_shape = tuple(in_shape[p] for p in perm)
    read_strides = tuple(in_strides[p] for p in perm)   # input stride of each output axis
    inner = out_shape[-1]
    k.define(extent=math.prod(out_shape[:-1]))          # rows of the output's last axis
    x, = k.ins
    with k.parallel_loop() as q:
        base = k.dot(k.unflatten(q, out_shape[:-1]), read_strides[:-1])
        row = k.mul(q, inner)
        with k.loop(0, inner, name="t") as t:
            k.store(k.load(x, k.add(base, k.mul(t, read_strides[-1]))), k.out, k.add(row, t))
    return k.finish(cost=inner)


@lowering("reshape")
def reshape(k: KernelBuilder) -> Alias:
    # row-major order is unchanged: the result is the operand's buffer under the new shape
    return Alias(0)
