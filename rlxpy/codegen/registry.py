"""Lowering rules, registered by op name: each turns one node into one LLVM function.

    @lowering("scale")
    def scale(k: KernelBuilder) -> Kernel:
        ...

A rule receives a `KernelBuilder` for the node and returns the `Kernel` it defined (or an `Alias`
when the result is an operand's buffer under another shape, with no code at all). When it cannot
handle this particular node it raises `Unsupported(reason)` BEFORE defining its function; the next
rule for the op is tried, and when none is left the node runs on the interpreter and the
executable's report gives the reason. Rules of one op are tried in descending priority, so a
specialised fast variant can be put in front of the generic rule without touching it.

A rule runs in two modes (see `lower`). To plan, the backend runs it up to `k.define(extent,
constants, baked)`, which records its arguments and stops the rule there: what the rule decided
until then (decline or not, which constants it prepared) is cheap, and together with the node and
the host it determines the code, so it keys the object cache without any IR being built. Only on a
cache miss does the chosen rule run again, to the end, emitting its function. So everything
before `define` must depend only on the node, its constant operands and the host, the same way
every time, and a rule whose CODE depends on constant values (a table baked into the module, not
passed by pointer) declares that data in `define(baked=...)`, which puts it into the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..ir.ops import OPS

if TYPE_CHECKING:
    from .emit import KernelBuilder


class Unsupported(Exception):
    """A rule declines a node (e.g. a shape it does not handle); the message says why."""


@dataclass(frozen=True)
class Kernel:
    """A function `void symbol(float* out, float* operand..., float* constant..., i64 begin, i64 end)`.

    It computes the iterations [begin, end) of its outermost parallel loop, which has `extent`
    iterations, so the runtime may split that range across threads. `cost` estimates the work of one
    iteration (in flops or elements) to decide whether splitting pays. `constants` are extra
    read-only arrays the rule prepared at compile time (packed weights), passed by pointer after
    the operands: their values are not in the code, so they do not change the cache key (their
    shapes do).
    """

    symbol: str
    extent: int
    cost: float
    constants: tuple[np.ndarray, ...] = field(default=(), compare=False)
    rule: str = ""


@dataclass(frozen=True)
class Alias:
    """The result is operand `operand`'s buffer seen with the node's shape: no code and no copy.

    Safe because no kernel ever writes into its operands: every kernel writes only its own result.
    """

    operand: int = 0
    rule: str = ""


LoweringFn = Callable[["KernelBuilder"], "Kernel | Alias"]


@dataclass(frozen=True)
class Rule:
    op: str
    name: str
    fn: LoweringFn
    priority: int = 0


LOWERINGS: dict[str, list[Rule]] = {}


def lowering(opname: str, *, priority: int = 0, name: str | None = None) -> Callable[[LoweringFn], LoweringFn]:
    """Register `fn` as a lowering rule of op `opname` (tried before rules of lower priority)."""
    def register(fn: LoweringFn) -> LoweringFn:
        if opname not in OPS:
            raise ValueError(f"lowering for unknown op '{opname}'")
        if OPS[opname].kind == "source":
            raise ValueError(f"op '{opname}' is a source: it has no code to lower")
        rules = LOWERINGS.setdefault(opname, [])
        rule_name = name or fn.__name__
        if any(r.name == rule_name for r in rules):
            raise ValueError(f"two lowering rules named '{rule_name}' for op '{opname}'")
        rules.append(Rule(opname, rule_name, fn, priority))
        rules.sort(key=lambda r: -r.priority)
        return fn
    return register


def rules_for(opname: str) -> list[Rule]:
    return list(LOWERINGS.get(opname, ()))
