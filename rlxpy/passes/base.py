"""What a pass is: a small named object whose dataclass fields are its options.

    @register
    @dataclass(frozen=True)
    class FuseEpilogue(Pass):
        name: ClassVar[str] = "fuse-epilogue"
        summary: ClassVar[str] = "..."
        upsample: bool = True                    # an option: `fuse-epilogue{skip=upsample_add}`

        def run(self, graph, ctx): ...           # returns a new graph, or `graph` itself if unchanged

A pass reads a graph and returns a graph; it never mutates one. Nodes it creates carry the pass's
name as their provenance (`origin`). Notes for the user (e.g. why a fusion did not apply) go to
`ctx.remark`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import PassError
from ..ir.graph import Graph, Node

PASSES: dict[str, type["Pass"]] = {}


def register(cls: type["Pass"]) -> type["Pass"]:
    if cls.name in PASSES:
        raise ValueError(f"two passes named '{cls.name}'")
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


@dataclass(frozen=True)
class Pass:
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""

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
                text = str(value).lower() if isinstance(value, bool) else str(value)
                opts.append(f"{_spell(f.name)}={text}")
        return self.name + ("{" + " ".join(opts) + "}" if opts else "")

    @property
    def title(self) -> str:
        """CamelCase, as MLIR's dump headers name passes: fuse-epilogue -> FuseEpilogue."""
        return type(self).__name__


def _spell(option: str) -> str:
    return option.replace("_", "-")


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
        want = getattr(kind, "__name__", str(kind))
        raise PassError(f"pass '{pass_name}': option '{key}' expects a {want}, got {text!r}") from None
