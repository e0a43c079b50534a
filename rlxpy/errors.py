"""The errors rlxpy raises for a user's mistake.

Every one of them is an `RlxError`, so the command line can print a single line for any of them and
exit with status 2 instead of a traceback. Each message names the culprit (node, key, input, file,
line and column) and what was expected.
"""

from __future__ import annotations


class RlxError(Exception):
    """Base class of every error caused by what a user passed in."""


class VerifyError(RlxError):
    """A graph breaks a rule of the IR: a bad shape, dtype, reference, name or op."""


class InputError(RlxError, ValueError):
    """A run-time input (or output buffer) does not fit the compiled graph."""


class WeightsError(RlxError, ValueError):
    """A parameter or weights file does not fit the graph it is bound to."""


class ParseError(RlxError):
    """Textual IR that cannot be read; carries the line and column."""

    def __init__(self, message: str, line: int, column: int, source: str | None = None):
        where = f"{source}:" if source else ""
        super().__init__(f"{where}{line}:{column}: {message}")
        self.line, self.column, self.source = line, column, source


class OptionError(RlxError, ValueError):
    """An option a function or command does not take, or a value outside the option's range."""


class ConfigError(RlxError, ValueError):
    """An environment variable (see rlxpy/config.py) with a value rlxpy does not accept."""


class OutOfMemoryError(RlxError, MemoryError):
    """Memory ran out, or a graph can never fit in what this process may use; names what needed
    the memory and how much."""


class PassError(RlxError):
    """A pass was misconfigured, or it produced a graph that fails verification."""


class CodegenError(RlxError):
    """Code generation refused a graph (e.g. a node without a native lowering under strict=True)."""


class MiscompileError(CodegenError):
    """A native kernel disagrees with the interpreter (compare_with="interp"); names the node."""


def clip(text: str, limit: int = 40) -> str:
    """`text` for a message: whole, or its start and its length when longer than `limit`."""
    return text if len(text) <= limit else f"{text[:limit - 3]}... ({len(text)} characters)"
