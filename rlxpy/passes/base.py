"""What a pass is: a small named object whose dataclass fields are its options.

    @register
    @dataclass(frozen=True)
    class FuseEpilogue(Pass):
        name: ClassVar[str] = "fuse-epilogue"
        summary: ClassVar[str] = "..."
        upsample: bool = True                    # an option: `fuse-epilogue{skip=upsample_add}`

        def run(self, graph, ctx): ...           # returns a new graph, or `graph` itself if unchanged

An option may declare its range: `max_elements: int = option(1 << 28, min=0)` (also `max=` and
`choices=`). Every option is checked, from a pipeline string and from Python construction alike:
its type, and the declared range; `rlxpy opt --list-passes` shows both.

A pass reads a graph and returns a graph; it never mutates one. Nodes it creates carry the pass's
name as their provenance (`origin`). Notes for the user (e.g. why a fusion did not apply) go to
`ctx.remark`.
"""

from __future__ import annotations

import dataclasses
import numbers
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import PassError
from ..ir.graph import Graph, Node

PASSES: dict[str, type["Pass"]] = {}


# What a pipeline string can spell (see pipeline.py).
PASS_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def register(cls: type["Pass"]) -> type["Pass"]:
    """Make a pass available to pipelines under its `name` (a class decorator)."""
    where = f"{cls.__module__}.{cls.__qualname__}"
    if not isinstance(cls.name, str) or not PASS_NAME.fullmatch(cls.name):
        raise PassError(f"cannot register pass {where}: its name {cls.name!r} is not one a pipeline can spell "
                        f"(letters, digits, '_', '.', '-')")
    taken = PASSES.get(cls.name)
    if taken is not None and taken is not cls:
        raise PassError(f"cannot register pass '{cls.name}' ({where}): the name is already taken by "
                        f"{taken.__module__}.{taken.__qualname__}")
    PASSES[cls.name] = cls
    return cls


@dataclass(frozen=True)
class Remark:
    """A note from a pass about one node, like LLVM's optimisation remarks."""

    pass_name: str
    node: str
    kind: str          # "applied" or "missed"
    message: str

    def __str__(self) -> str:
        return f"[{self.pass_name}] {self.kind}: %{self.node}: {self.message}"


@dataclass
class PassContext:
    """What a running pass may use besides the graph: where its remarks go."""

    remarks: list[Remark] = field(default_factory=list)
    current: str = ""

    def remark(self, node: Node | str, kind: str, message: str) -> None:
        name = node.name if isinstance(node, Node) else node
        self.remarks.append(Remark(self.current, name, kind, message))


def option(default: Any, *, min: int | float | None = None, max: int | float | None = None,
           choices: tuple | None = None) -> Any:
    """A pass option with a declared range (bounds inclusive) or a set of allowed values."""
    return field(default=default, metadata={"min": min, "max": max, "choices": choices})


def option_range(f: dataclasses.Field) -> str:
    """The declared range of an option as text ("" when it has none): `>= 0`, `1..16`, `one of a, b`."""
    lo, hi, choices = (f.metadata.get(k) for k in ("min", "max", "choices"))
    if choices is not None:
        return "one of " + ", ".join(_text(c) for c in choices)
    if lo is not None and hi is not None:
        return f"{lo}..{hi}"
    if lo is not None:
        return f">= {lo}"
    if hi is not None:
        return f"<= {hi}"
    return ""


_KINDS = {"bool": (bool,), "int": (numbers.Integral,), "float": (numbers.Real,), "str": (str,)}
_WORDS = {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string"}


@dataclass(frozen=True)
class Pass:
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_option(self.name, f, getattr(self, f.name))

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        raise NotImplementedError(f"pass {self.name} has no run()")

    # -- options -------------------------------------------------------------------------------

    @classmethod
    def options(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(cls)}

    @classmethod
    def with_options(cls, raw: dict[str, str]) -> "Pass":
        """An instance from textual options (`upsample=false`); names may use - or _."""
        fields = cls.options()
        values: dict[str, Any] = {}
        for key, text in raw.items():
            attr = key.replace("-", "_")
            if attr not in fields:
                valid = ", ".join(_spell(f) for f in fields) or "none"
                raise PassError(f"pass '{cls.name}' has no option '{key}'; its options: {valid}")
            values[attr] = _parse_value(cls.name, key, text, fields[attr].type)
        return cls(**values)

    def spelling(self) -> str:
        """The pass as it is written in a pipeline: name plus options that are not the default."""
        opts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                opts.append(f"{_spell(f.name)}={_text(value)}")
        return self.name + ("{" + " ".join(opts) + "}" if opts else "")

    @property
    def title(self) -> str:
        """CamelCase, as MLIR's dump headers name passes: fuse-epilogue -> FuseEpilogue."""
        return type(self).__name__


def _spell(option: str) -> str:
    return option.replace("_", "-")


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _check_option(pass_name: str, f: dataclasses.Field, value: Any) -> None:
    kind = getattr(f.type, "__name__", f.type)
    types = _KINDS.get(kind)
    wrong = not isinstance(value, types) or (kind != "bool" and isinstance(value, bool)) if types else False
    if wrong or (kind == "float" and value != value):                # NaN has no place in a range
        raise PassError(f"pass '{pass_name}': option '{_spell(f.name)}' expects {_WORDS[kind]}, got {value!r}")
    lo, hi, choices = (f.metadata.get(k) for k in ("min", "max", "choices"))
    if (choices is not None and value not in choices) or (lo is not None and value < lo) \
            or (hi is not None and value > hi):
        bounds = option_range(f)
        if choices is None and kind in _WORDS:
            bounds = f"{_WORDS[kind]} {'in ' if '..' in bounds else ''}{bounds}"
        raise PassError(f"pass '{pass_name}': option '{_spell(f.name)}' = {_text(value)} is out of range: "
                        f"expected {bounds}")


def _parse_value(pass_name: str, key: str, text: str, kind: Any) -> Any:
    kind = {"bool": bool, "int": int, "float": float, "str": str}.get(kind, kind)
    try:
        if kind is bool:
            if text.lower() in ("true", "1"):
                return True
            if text.lower() in ("false", "0"):
                return False
            raise ValueError
        return kind(text)
    except ValueError:
        want = _WORDS.get(getattr(kind, "__name__", ""), f"a {kind}")
        raise PassError(f"pass '{pass_name}': option '{key}' expects {want}, got {text!r}") from None
