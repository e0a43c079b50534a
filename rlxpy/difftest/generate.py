"""Random valid graphs over the whole op vocabulary, for differential testing.

Every random decision goes through a `Chooser`, so the same generator serves two masters: the
command line drives it from a seed (`SeededChooser`, reproducible), and hypothesis drives it from its
own data (`rlxpy.difftest.strategies`), which lets hypothesis shrink a failing graph by shrinking
the choices that built it.

The graphs mix inputs, params and consts of random shapes (odd and size-1 dimensions included);
every op with random attributes; values reused by several users (shared sub-expressions); several
outputs; and, often, the matmul -> bias_add -> transpose -> upsample_add -> scale chains that
fuse-epilogue looks for. Data is random and never zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol, Sequence, TypeVar

import numpy as np

from ..ir import Graph, GraphBuilder, Value

T = TypeVar("T")

DIMS = (1, 2, 3, 4, 5, 6, 7, 8, 12, 16)
MAX_ELEMENTS = 4096
FACTORS = (0.5, 2.0, -1.5, 0.25, 3.0)
OPS = ("matmul", "bias_add", "upsample_add", "scale", "transpose", "reshape", "pos_encoding", "chain")


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

    # -- ops -----------------------------------------------------------------------------------

    def add(self, v: Value | None) -> Value | None:
        if v is not None:
            self.pool.append(v)
            for node in self.b.nodes[-1:]:
                self.used.update(node.operands)
        return v

    def matmul(self, a: Value | None = None) -> Value | None:
        a = a or self.pick(lambda v: v.type.rank >= 2) or self.leaf(self.shape(self.ch.integer(2, 4)))
        k, n = a.shape[-1], self.ch.choice(DIMS)
        batch = a.shape[:-2]
        if batch and self.ch.chance(0.5):   # batched b: the same leading dims, or 1s, or fewer of them
            lead = tuple(d if self.ch.chance(0.6) else 1 for d in batch[self.ch.integer(0, len(batch) - 1):])
        else:
            lead = ()
        if math.prod(a.shape[:-1]) * n > MAX_ELEMENTS:
            n = 1
        return self.add(self.b.matmul(a, self.operand(lead + (k, n))))

    def bias_add(self, x: Value | None = None, last: bool = False) -> Value | None:
        x = x or self.pick() or self.leaf(self.shape())
        axis = x.type.rank - 1 if last else self.ch.integer(-x.type.rank, x.type.rank - 1)
        return self.add(self.b.bias_add(x, self.operand((x.shape[axis],)), axis=axis))

    def upsample_add(self, x: Value | None = None) -> Value | None:
        mode = self.ch.choice(("nearest", "bilinear"))
        if x is None and self.ch.chance(0.5):        # an existing value as the coarse operand
            coarse = self.pick(lambda v: v.type.rank >= 2 and 4 * v.type.numel <= MAX_ELEMENTS)
            if coarse is not None:
                fine = self.operand(coarse.shape[:-2] + (2 * coarse.shape[-2], 2 * coarse.shape[-1]))
                return self.add(self.b.upsample_add(fine, coarse, mode=mode))
        x = x or self.pick(lambda v: v.type.rank >= 2 and v.shape[-1] % 2 == 0 and v.shape[-2] % 2 == 0)
        if x is None:
            shape = self.shape(self.ch.integer(2, 4))
            x = self.leaf(shape[:-2] + (2 * max(1, shape[-2] // 2), 2 * max(1, shape[-1] // 2)))
        coarse = self.operand(x.shape[:-2] + (x.shape[-2] // 2, x.shape[-1] // 2))
        return self.add(self.b.upsample_add(x, coarse, mode=mode))

    def scale(self, x: Value | None = None) -> Value | None:
        x = x or self.pick() or self.leaf(self.shape())
        return self.add(self.b.scale(x, factor=self.ch.choice(FACTORS)))

    def transpose(self, x: Value | None = None, perm: tuple[int, ...] | None = None) -> Value | None:
        x = x or self.pick() or self.leaf(self.shape())
        if perm is None:
            perm = list(range(x.type.rank))
            for i in range(len(perm) - 1, 0, -1):     # Fisher-Yates through the chooser
                j = self.ch.integer(0, i)
                perm[i], perm[j] = perm[j], perm[i]
        return self.add(self.b.transpose(x, perm=tuple(perm)))

    def reshape(self, x: Value | None = None) -> Value | None:
        x = x or self.pick() or self.leaf(self.shape())
        remaining, dims = x.type.numel, []
        for _ in range(self.ch.integer(0, 3)):
            divisors = [d for d in range(1, remaining + 1) if remaining % d == 0 and d <= 16]
            d = self.ch.choice(divisors)
            dims.append(d)
            remaining //= d
        dims.append(remaining)
        return self.add(self.b.reshape(x, shape=tuple(dims)))

    def pos_encoding(self) -> Value | None:
        return self.add(self.b.pos_encoding(batch=self.ch.integer(1, 2), dim=self.ch.choice((4, 8, 12)),
                                            height=self.ch.integer(1, 6), width=self.ch.integer(1, 6)))

    def chain(self) -> Value | None:
        """The pattern fuse-epilogue looks for, with steps left out at random."""
        rank = self.ch.choice((2, 3, 4, 4))
        x = self.pick(lambda v: v.type.rank == rank) or self.leaf(self.shape(rank))
        y = self.matmul(x)
        if self.ch.chance(0.8):
            y = self.bias_add(y, last=True)
        if self.ch.chance(0.7):
            y = self.transpose(y, (0, 3, 1, 2) if rank == 4 and self.ch.chance(0.7) else None)
        if self.ch.chance(0.6) and y.type.rank >= 2 and y.shape[-1] % 2 == 0 and y.shape[-2] % 2 == 0:
            y = self.upsample_add(y)
        if self.ch.chance(0.5):
            y = self.scale(y)
        return y

    # -- the whole graph -----------------------------------------------------------------------

    def run(self) -> Case:
        self.leaf(self.shape(self.ch.integer(2, 4)))
        while len(self.b.nodes) < self.max_nodes:
            getattr(self, self.ch.choice(OPS))()
        computed = [v for v in self.pool if self.b.nodes[self._index(v)].op not in ("input", "param", "const")]
        if not computed:
            computed = [self.scale()]
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
