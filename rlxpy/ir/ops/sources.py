"""Sources: values that come from outside the computation."""

from __future__ import annotations

from ..opdef import SOURCE, Attr, OpDef, declare


INPUT = declare(OpDef(
    "input", "A run-time input, bound by name when the executable is called.",
    attrs={"name": Attr("str", doc="the keyword the caller passes it by")},
    traits={SOURCE}, rounding=0,
))

PARAM = declare(OpDef(
    "param", "A named weight, bound when the graph is compiled (named by its checkpoint key).",
    attrs={"name": Attr("str", doc="the key in the params dict or checkpoint")},
    traits={SOURCE}, rounding=0,
))

CONST = declare(OpDef(
    "const", "A compile-time constant tensor; its data is carried by the node.",
    traits={SOURCE}, rounding=0,
))
