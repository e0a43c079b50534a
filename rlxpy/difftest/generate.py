"""Random valid graphs over the whole op vocabulary, for differential testing.

Every random decision goes through a `Chooser`, so the same generator serves two masters: the
command line drives it from a seed (`SeededChooser`, reproducible), and hypothesis drives it from its
own data (`rlxpy.difftest.strategies`), which lets hypothesis shrink a failing graph by shrinking
the choices that built it.

The graphs mix inputs, params and consts of random shapes (odd and size-1 dimensions included);
every op of the vocabulary, found by its traits and given attributes drawn from its declaration
(choices, axes, permutations, shapes); values reused by several users (shared sub-expressions);
several outputs; and, often, the matmul -> pointwise ops -> transpose -> pointwise ops chains that
fuse-epilogue looks for. Data is random and never zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol, Sequence, TypeVar

import numpy as np

from ..errors import VerifyError
from ..ir import Graph, GraphBuilder, Value
from ..ir.opdef import COMPOSITE
from ..ir.ops import (CONTRACTION, FUSED, LAYOUT, NULLARY, OPS, POINTWISE, REQUIRED, Attr, OpDef,
                      with_trait)

T = TypeVar("T")

DIMS = (1, 2, 3, 4, 5, 6, 7, 8, 12, 16)
MAX_ELEMENTS = 4096
FACTORS = (0.5, 2.0, -1.5, 0.25, 3.0)
# What the generator can make, found by the ops' traits (a new op of a kind joins by itself).
POINTWISE_OPS = [op for op in with_trait(POINTWISE) if not op.has(FUSED)]
AXIS_OPS = [op for op in POINTWISE_OPS if any(a.kind == "axis" for a in op.access)]
CONTRACTION_OPS = [op for op in with_trait(CONTRACTION) if not op.has(FUSED)]
LAYOUT_OPS = with_trait(LAYOUT)
PERMUTATION_OPS = [op for op in LAYOUT_OPS if [a.role for a in op.attrs.values()] == ["perm"]]
NULLARY_OPS = with_trait(NULLARY)
# composites over (queries, keys, values): softmax(q k^T) v and its kind
ATTENTION_OPS = [op for op in with_trait(COMPOSITE) if op.fixed_operands == ("q", "k", "v")]
LONG_KEYS = (97, 300, 2000)   # now and then: more keys than a vectorised kernel keeps in one block
KINDS = ("pointwise", "pointwise", "contraction", "layout", "nullary", "chain", "chain") + \
    (("attention",) if ATTENTION_OPS else ())


class Chooser(Protocol):
    def integer(self, lo: int, hi: int) -> int: ...          # inclusive bounds
    def choice(self, options: Sequence[T]) -> T: ...
    def chance(self, p: float) -> bool: ...
    def seed(self) -> int: ...                               # a seed for bulk random data


class SeededChooser:
    """Decisions from a seed: the same seed always gives the same graph."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def integer(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi + 1))

    def choice(self, options):
        return options[int(self.rng.integers(len(options)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def seed(self) -> int:
        return int(self.rng.integers(2**31))


@dataclass
class Case:
    """A graph, the params it expects and inputs to run it on."""

    graph: Graph
    params: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: dict[str, np.ndarray] = field(default_factory=dict)


def nonzero_data(shape: tuple[int, ...], seed: int, scale: float = 1.0) -> np.ndarray:
    """Random float32 data bounded away from zero (zeros hide layout bugs)."""
    rng = np.random.default_rng(seed)
    magnitude = rng.uniform(0.25, 1.0, shape)
    sign = rng.choice([-1.0, 1.0], shape)
    return (scale * magnitude * sign).astype(np.float32)


class _Generator:
    def __init__(self, ch: Chooser, max_nodes: int, name: str):
        self.ch = ch
        self.max_nodes = max_nodes
        self.b = GraphBuilder(name)
        self.pool: list[Value] = []
        self.params: dict[str, np.ndarray] = {}
        self.inputs: dict[str, np.ndarray] = {}
        self.used: set[str] = set()

    # -- leaves --------------------------------------------------------------------------------

    def shape(self, rank: int | None = None) -> tuple[int, ...]:
        rank = self.ch.integer(1, 4) if rank is None else rank
        dims = [self.ch.choice(DIMS) for _ in range(rank)]
        while math.prod(dims) > MAX_ELEMENTS:
            dims[dims.index(max(dims))] //= 2
        return tuple(max(1, d) for d in dims)

    def leaf(self, shape: tuple[int, ...]) -> Value:
        """A new input, param or const of this shape."""
        kind = self.ch.choice(("input", "input", "param", "const"))
        n = len(self.b.nodes)
        if kind == "input":
            v = self.b.input(f"in{n}", shape)
            self.inputs[f"in{n}"] = nonzero_data(shape, self.ch.seed())
        elif kind == "param":
            v = self.b.param(f"p{n}", shape)
            self.params[f"p{n}"] = nonzero_data(shape, self.ch.seed(), 0.5)
        else:
            v = self.b.const(nonzero_data(shape, self.ch.seed(), 0.5))
        self.pool.append(v)
        return v

    def pick(self, ok=lambda v: True) -> Value | None:
        """A value from the pool, favouring recent ones (deep graphs) but sometimes an older one
        (so values get several users: shared sub-expressions)."""
        fits = [v for v in self.pool if ok(v)]
        if not fits:
            return None
        if self.ch.chance(0.6):
            return fits[-1 - self.ch.integer(0, min(2, len(fits) - 1))]
        return self.ch.choice(fits)

    def operand(self, shape: tuple[int, ...]) -> Value:
        """A value of exactly this shape: an existing one when there is, else a new leaf."""
        found = self.pick(lambda v: v.shape == shape) if self.ch.chance(0.5) else None
        return found or self.leaf(shape)

    # -- ops, by what their declarations say they are ------------------------------------------------

    def add(self, v: Value | None) -> Value | None:
        if v is not None:
            self.pool.append(v)
            for node in self.b.nodes[-1:]:
                self.used.update(node.operands)
        return v

    def attr_value(self, name: str, attr: Attr, x: Value | None):
        """A random value for an attribute, from its declaration: its choices, or by its role."""
        if attr.choices:
            return self.ch.choice(attr.choices)
        if attr.role == "axis" and x is not None:
            return self.ch.integer(-x.type.rank, x.type.rank - 1)
        if attr.kind == "float":
            return self.ch.choice(FACTORS)
        if attr.kind == "bool":
            return self.ch.chance(0.5)
        if attr.kind == "int":
            return self.ch.choice(DIMS) if attr.role == "size" else self.ch.integer(0, 4)
        return attr.default

    def attrs_for(self, opdef: OpDef, x: Value | None, fixed: dict | None = None) -> dict:
        """Random values for every attribute without a fixed one; defaults sometimes kept."""
        out = dict(fixed or {})
        for name, attr in opdef.attrs.items():
            if name in out:
                continue
            if attr.default is not REQUIRED and attr.role != "size" and self.ch.chance(0.3):
                continue
            out[name] = self.attr_value(name, attr, x)
        return out

    def pointwise(self, opdef: OpDef | None = None, x: Value | None = None, on_last: bool = False) -> Value | None:
        """A pointwise op on `x` (or a value from the pool), its other operands made to fit its
        Accesses: the same shape, a rank-1 operand along the chosen axis, a half-size coarse level."""
        opdef = opdef or self.ch.choice(POINTWISE_OPS)
        needs_even = any(a.kind == "upsample2x" for a in opdef.access)
        if x is None and needs_even and self.ch.chance(0.5):
            coarse = self.pick(lambda v: v.type.rank >= 2 and 4 * v.type.numel <= MAX_ELEMENTS)
            if coarse is not None:                    # an existing value as the coarse level
                fine = self.operand(coarse.shape[:-2] + (2 * coarse.shape[-2], 2 * coarse.shape[-1]))
                return self._pointwise_on(opdef, fine, {1: coarse}, on_last)
        if x is None and needs_even:
            x = self.pick(lambda v: v.type.rank >= 2 and v.shape[-1] % 2 == 0 and v.shape[-2] % 2 == 0)
            if x is None:
                shape = self.shape(self.ch.integer(2, 4))
                x = self.leaf(shape[:-2] + (2 * max(1, shape[-2] // 2), 2 * max(1, shape[-1] // 2)))
        x = x or self.pick() or self.leaf(self.shape())
        if needs_even and (x.type.rank < 2 or x.shape[-1] % 2 or x.shape[-2] % 2):
            return None
        return self._pointwise_on(opdef, x, {}, on_last)

    def _pointwise_on(self, opdef: OpDef, x: Value, given: dict[int, Value], on_last: bool) -> Value | None:
        fixed = {}
        for name, attr in opdef.attrs.items():       # an axis along the last dim, when asked
            if attr.role == "axis" and on_last:
                fixed[name] = x.type.rank - 1
        attrs = self.attrs_for(opdef, x, fixed)
        operands = [x]
        for i, access in enumerate(opdef.access[1:], start=1):
            if i in given:
                operands.append(given[i])
            elif access.kind == "axis":
                axis = attrs.get(access.attr, opdef.attrs[access.attr].default) % x.type.rank
                operands.append(self.operand((x.shape[axis],)))
            elif access.kind == "upsample2x":
                operands.append(self.operand(x.shape[:-2] + (x.shape[-2] // 2, x.shape[-1] // 2)))
            else:
                operands.append(self.operand(x.shape))
        try:
            return self.add(self.b.op(opdef.name, *operands, **attrs))
        except VerifyError:
            return None

    def contraction(self, a: Value | None = None) -> Value | None:
        a = a or self.pick(lambda v: v.type.rank >= 2) or self.leaf(self.shape(self.ch.integer(2, 4)))
        k, n = a.shape[-1], self.ch.choice(DIMS)
        batch = a.shape[:-2]
        if batch and self.ch.chance(0.5):   # batched b: the same leading dims, or 1s, or fewer of them
            lead = tuple(d if self.ch.chance(0.6) else 1 for d in batch[self.ch.integer(0, len(batch) - 1):])
        else:
            lead = ()
        if math.prod(a.shape[:-1]) * n > MAX_ELEMENTS:
            n = 1
        op = self.ch.choice(CONTRACTION_OPS)
        return self.add(self.b.op(op.name, a, self.operand(lead + (k, n))))

    def attention(self) -> Value | None:
        """An attention over q from the pool (or new), with keys and values made to fit: leading axes
        that broadcast (some of them 1, or fewer of them), any number of keys (now and then a
        long sequence of few features), values of their own width; the scale given or default."""
        opdef = self.ch.choice(ATTENTION_OPS)
        q = self.pick(lambda v: v.type.rank >= 2) or self.leaf(self.shape(self.ch.integer(2, 4)))
        lead, d = q.shape[:-2], q.shape[-1]
        long = self.ch.chance(0.15) and d <= 2 and math.prod(lead) <= 2
        lk = self.ch.choice(LONG_KEYS) if long else self.ch.choice(DIMS)
        dv = self.ch.choice((1, 2, 3)) if long else self.ch.choice(DIMS)

        def batch() -> tuple[int, ...]:
            if not lead or self.ch.chance(0.5):
                return lead
            return tuple(n if self.ch.chance(0.6) else 1 for n in lead[self.ch.integer(0, len(lead) - 1):])

        k_lead, v_lead = batch(), batch()
        if max(math.prod(k_lead) * lk * d, math.prod(v_lead) * lk * dv, math.prod(lead) * q.shape[-2] * dv) \
                > MAX_ELEMENTS:
            return None
        attrs = {} if self.ch.chance(0.5) else {"scale": self.ch.choice(FACTORS)}
        return self.add(self.b.op(opdef.name, q, self.operand(k_lead + (lk, d)), self.operand(v_lead + (lk, dv)),
                                  **attrs))

    def layout(self, x: Value | None = None, perm: tuple[int, ...] | None = None,
               opdef: OpDef | None = None) -> Value | None:
        """A layout op, its attributes made from their roles: a random permutation, or a shape
        with the same number of elements."""
        opdef = opdef or self.ch.choice(LAYOUT_OPS)
        x = x or self.pick() or self.leaf(self.shape())
        attrs = {}
        for name, attr in opdef.attrs.items():
            if attr.role == "perm":
                attrs[name] = perm if perm is not None else self.permutation(x.type.rank)
            elif attr.role == "shape":
                attrs[name] = self.same_size_shape(x.type.numel)
            else:
                attrs[name] = self.attr_value(name, attr, x)
        return self.add(self.b.op(opdef.name, x, **attrs))

    def permutation(self, rank: int) -> tuple[int, ...]:
        perm = list(range(rank))
        for i in range(rank - 1, 0, -1):              # Fisher-Yates through the chooser
            j = self.ch.integer(0, i)
            perm[i], perm[j] = perm[j], perm[i]
        return tuple(perm)

    def same_size_shape(self, numel: int) -> tuple[int, ...]:
        remaining, dims = numel, []
        for _ in range(self.ch.integer(0, 3)):
            divisors = [d for d in range(1, remaining + 1) if remaining % d == 0 and d <= 16]
            d = self.ch.choice(divisors)
            dims.append(d)
            remaining //= d
        dims.append(remaining)
        return tuple(dims)

    def nullary(self) -> Value | None:
        """An op computed from its attributes alone; attributes drawn until its type rule accepts."""
        opdef = self.ch.choice(NULLARY_OPS)
        for _ in range(8):
            attrs = {name: (self.ch.choice((4, 8, 12)) if attr.role == "size" and self.ch.chance(0.5)
                            else self.ch.integer(1, 6) if attr.role == "size" else self.attr_value(name, attr, None))
                     for name, attr in opdef.attrs.items()
                     if attr.default is REQUIRED or self.ch.chance(0.5)}
            try:
                return self.add(self.b.op(opdef.name, **attrs))
            except VerifyError:
                continue
        return None

    def chain(self) -> Value | None:
        """What fuse-epilogue looks for: a contraction, then pointwise ops, one of them perhaps
        after a permutation (often channels-last to NCHW)."""
        rank = self.ch.choice((2, 3, 4, 4))
        x = self.pick(lambda v: v.type.rank == rank) or self.leaf(self.shape(rank))
        y = self.contraction(x)
        if self.ch.chance(0.8):
            y = self.pointwise(self.ch.choice(AXIS_OPS), y, on_last=True) or y if AXIS_OPS else y
        if self.ch.chance(0.7):
            perm = (0, 3, 1, 2) if rank == 4 and self.ch.chance(0.7) else None
            y = self.layout(y, perm, opdef=PERMUTATION_OPS[0]) if PERMUTATION_OPS else y
        for _ in range(self.ch.integer(0, 2)):
            if self.ch.chance(0.7):
                y = self.pointwise(x=y) or y
        return y

    # -- the whole graph -----------------------------------------------------------------------

    def run(self) -> Case:
        self.leaf(self.shape(self.ch.integer(2, 4)))
        while len(self.b.nodes) < self.max_nodes:
            getattr(self, self.ch.choice(KINDS))()
        computed = [v for v in self.pool if not OPS[self.b.nodes[self._index(v)].op].is_source]
        if not computed:
            computed = [self.pointwise(x=self.pool[-1]) or self.layout(self.pool[-1], opdef=LAYOUT_OPS[0])]
        unused = [v for v in computed if v.name not in self.used]
        outputs = unused[-3:] or computed[-1:]
        if self.ch.chance(0.3):                       # an intermediate as an output too
            extra = self.ch.choice(computed)
            if extra not in outputs:
                outputs.append(extra)
        for i, v in enumerate(outputs):
            self.b.output(f"out{i}", v)
        return Case(self.b.build(), self.params, self.inputs)

    def _index(self, v: Value) -> int:
        return next(i for i, n in enumerate(self.b.nodes) if n.name == v.name)


def random_case(chooser: Chooser, max_nodes: int = 12, name: str = "random") -> Case:
    """A random valid graph (verified), its params and inputs."""
    return _Generator(chooser, max_nodes, name).run()


def seeded_case(seed: int, max_nodes: int = 12) -> Case:
    return random_case(SeededChooser(seed), max_nodes, name=f"random_{seed}")
