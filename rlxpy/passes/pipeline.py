"""Pipeline strings: `fold-constants,fuse-epilogue{skip=upsample_add},cse,dce`.

Passes are separated by commas; options go in braces after a pass, separated by spaces or commas.
A name in `PIPELINES` (such as `default`) stands for its whole list.
"""

from __future__ import annotations

import re

from ..errors import PassError
from .base import PASS_NAME, PASSES, Pass

# The pipeline `rlxpy.compile` runs unless told otherwise: fold what depends only on constants (the
# position encodings, the weight reshapes and transposes), fuse each matmul with its epilogue, then
# merge duplicates and drop what no output needs.
PIPELINES: dict[str, str] = {
    "default": "fold-constants,fuse-epilogue,cse,dce",
    "none": "",
}

_TOKEN = re.compile(rf"\s*({PASS_NAME.pattern})\s*(\{{[^{{}}]*\}})?\s*(,|$)")


def parse_pipeline(text: str) -> list[Pass]:
    """The passes a pipeline string names, in order, each with its options."""
    passes: list[Pass] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise PassError(f"bad pipeline {text!r} at character {pos + 1}: expected a pass name, "
                            f"optionally followed by {{option=value ...}}, then ',' or the end")
        name, braces = m.group(1), m.group(2)
        if name in PIPELINES:
            if braces:
                raise PassError(f"pipeline '{name}' takes no options")
            passes += parse_pipeline(PIPELINES[name])
        elif name in PASSES:
            passes.append(PASSES[name].with_options(_options(name, braces)))
        else:
            raise PassError(f"unknown pass '{name}'; passes: {', '.join(sorted(PASSES))}; "
                            f"pipelines: {', '.join(sorted(PIPELINES))}")
        pos = m.end()
        if m.group(3) == "," and pos >= len(text):
            raise PassError(f"bad pipeline {text!r}: trailing ','")
    return passes


def _options(name: str, braces: str | None) -> dict[str, str]:
    if not braces:
        return {}
    out = {}
    for item in re.split(r"[\s,]+", braces[1:-1].strip()):
        if not item:
            continue
        key, eq, value = item.partition("=")
        if not eq or not key or not value:
            raise PassError(f"pass '{name}': option {item!r} must be written name=value")
        if key in out:
            raise PassError(f"pass '{name}': option '{key}' given twice")
        out[key] = value
    return out


def format_pipeline(passes: list[Pass]) -> str:
    return ",".join(p.spelling() for p in passes)
