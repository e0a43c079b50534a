"""Passes and the PassManager that runs them.

    from rlxpy.passes import PassManager
    PassManager("fold-constants,fuse-epilogue{skip=upsample_add},cse,dce").run(graph)

Each pass lives in its own module and registers itself by name; `PIPELINES["default"]` is what
`rlxpy.compile` runs unless told otherwise. Passes of your own join them with `@register`, or from
a file or module with `load_pass_plugin` (`--load-pass-plugin` on the command line).
"""

from . import cse, dce, fold_constants, fuse_epilogue  # noqa: F401  (register the passes)
from .base import PASSES, Pass, PassContext, Remark, option, option_range, register
from .instruments import DumpDir, Instrument, PassTiming, PrintIR
from .manager import Application, PassManager, RunLog
from .pipeline import PIPELINES, format_pipeline, parse_pipeline
from .plugins import Plugin, PluginError, load_pass_plugin, loaded_plugins

__all__ = [
    "PASSES", "PIPELINES", "Application", "DumpDir", "Instrument", "Pass", "PassContext",
    "PassManager", "PassTiming", "Plugin", "PluginError", "PrintIR", "Remark", "RunLog", "format_pipeline",
    "load_pass_plugin", "loaded_plugins", "option", "option_range", "parse_pipeline", "register",
]
