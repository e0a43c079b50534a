"""The numpy meaning of every op: the reference every backend is checked against.

One rule per op name, registered with `@rule`, in one module per kind of op (as the declarations
in `rlxpy.ir.ops` are). A rule receives the node (for its attributes) and
its operands' arrays, and returns the result as float32. Rules favour the obvious formulation over
the fast one: this is the definition of each op, not an implementation to tune.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

Rule = Callable[..., np.ndarray]
RULES: dict[str, Rule] = {}
VIEWS: set[str] = set()          # ops whose rule returns a view of its operand (no new array)


def rule(opname: str, *, view: bool = False) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        if opname in RULES:
            raise ValueError(f"two interpreter rules for op '{opname}'")
        RULES[opname] = fn
        if view:
            VIEWS.add(opname)
        return fn
    return register


# every rule, one module per kind of op (imported here, after the registry they register in)
from . import contraction, fused, layout, nullary, pointwise, attention  # noqa: E402,F401
from .nullary import sine_position_encoding  # noqa: E402,F401
