"""Pass plugins: Python files or modules whose `@register`ed passes join the registry, so that
pipelines (and `rlxpy opt --list-passes`) know them, as `opt --load-pass-plugin` does in LLVM.

    load_pass_plugin("my_passes.py")       # a file, by path
    load_pass_plugin("mypkg.passes")       # a module, by name (importable from sys.path)
    loaded_plugins()                       # every plugin loaded, in order

Reproducers record `loaded_plugins()` (each by the absolute path of its file, or its module name)
so that replaying one loads them again. Loading a plugin twice is a no-op. A plugin that fails to
import, or registers a name that is taken, leaves nothing registered.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from ..errors import PassError
from .base import PASSES
from .pipeline import PIPELINES

_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class PluginError(PassError):
    """A pass plugin that cannot be loaded: not found, failed to import, or registers a bad name."""


@dataclass(frozen=True)
class Plugin:
    spec: str                      # what loads it again: a file's absolute path, or a module name
    module: str                    # its name in sys.modules
    passes: tuple[str, ...]        # the passes it registered
    pipelines: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.spec


_LOADED: dict[str, Plugin] = {}


def is_file_spec(spec: str) -> bool:
    """A path (`x.py`, `dir/x`) rather than a module name (`pkg.mod`)."""
    return spec.endswith(".py") or "/" in spec or os.sep in spec or not _MODULE_NAME.fullmatch(spec)


def load_pass_plugin(spec: str | os.PathLike) -> Plugin:
    """Import a plugin file or module and return what it registered; a `PassError` naming the
    plugin if it is not found, fails to import, or registers nothing or a name already taken."""
    text = os.fspath(spec)
    if is_file_spec(text):
        path = Path(text).expanduser()
        if not path.is_file():
            what = "is a directory, not a .py file" if path.is_dir() else "file not found"
            raise PluginError(f"pass plugin {text}: {what}")
        key = str(path.resolve())
        digest = hashlib.sha1(key.encode()).hexdigest()[:10]
        module_name = f"rlxpy_pass_plugin_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"
    else:
        key = module_name = text
    if key in _LOADED:
        return _LOADED[key]
    before = dict(PASSES), dict(PIPELINES), module_name in sys.modules
    try:
        module_file = _import(text, key, module_name)
    except PluginError:
        _restore(*before, module_name)
        raise
    except BaseException as e:      # whatever the plugin raised, SystemExit included
        _restore(*before, module_name)
        if isinstance(e, KeyboardInterrupt):
            raise
        raise PluginError(f"pass plugin {text}: {_describe(e, _origin(key, module_name))}") from e
    passes = tuple(n for n, cls in PASSES.items() if n not in before[0] or cls.__module__ == module_name)
    pipelines = tuple(n for n in PIPELINES if n not in before[1])
    clash = [n for n in passes if n in PIPELINES]
    if clash:
        _restore(*before, module_name)
        raise PluginError(f"pass plugin {text}: pass '{clash[0]}' has the name of a pipeline, which would hide it")
    if not passes and not pipelines:
        _restore(*before, module_name)
        raise PluginError(f"pass plugin {text}: registers no passes ({module_file} defines none decorated with "
                          f"@rlxpy.passes.register)")
    plugin = Plugin(key, module_name, passes, pipelines)
    _LOADED[key] = plugin
    return plugin


def loaded_plugins() -> list[Plugin]:
    """Every plugin loaded so far, in the order it was loaded."""
    return list(_LOADED.values())


def plugin_of(pass_name: str) -> Plugin | None:
    """The plugin that registered a pass, or None for rlxpy's own (and passes registered in code)."""
    return next((p for p in _LOADED.values() if pass_name in p.passes), None)


def _import(text: str, key: str, module_name: str) -> str:
    """Import the plugin; the file it came from."""
    if module_name == key:                                   # a module name
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
                raise PluginError(f"pass plugin {text}: no module named '{e.name}' (give a FILE.py path, or the "
                                f"name of a module importable from sys.path)") from None
            raise
        return getattr(module, "__file__", None) or module_name
    spec = importlib.util.spec_from_file_location(module_name, key)
    if spec is None or spec.loader is None:
        raise PluginError(f"pass plugin {text}: cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module                        # dataclasses look their module up here
    spec.loader.exec_module(module)
    return key


def _origin(key: str, module_name: str) -> str | None:
    """The plugin's source file, to point at the line that failed."""
    if module_name != key:
        return key
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    return found.origin if found is not None else None


def _describe(e: BaseException, module_file: str | None) -> str:
    """`import failed: NameError: ... (at x.py:12)`, or the registry's own message for a name clash."""
    if isinstance(e, PassError):                             # register(): a name taken or unspellable
        return str(e)
    where = ""
    if not isinstance(e, SyntaxError) and module_file:
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == module_file]
        if frames:
            where = f" (at {Path(module_file).name}:{frames[-1].lineno})"
    message = str(e).splitlines()[0] if str(e) else ""
    return f"import failed: {type(e).__name__}{': ' + message if message else ''}{where}"


def _restore(passes: dict, pipelines: dict, was_imported: bool, module_name: str) -> None:
    """Undo what a plugin that failed registered (and its module, unless imported before)."""
    PASSES.clear()
    PASSES.update(passes)
    PIPELINES.clear()
    PIPELINES.update(pipelines)
    if not was_imported:
        sys.modules.pop(module_name, None)
