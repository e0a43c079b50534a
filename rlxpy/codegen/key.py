"""The object cache's key: everything that determines the generated code, known before emitting it.

    module_key(name, kernels)  (kernels from select.select)

It is a SHA-256 over
- this key scheme's version;
- the host: triple, CPU name, feature string, opt level, LLVM and llvmlite versions
  (`Host.cache_identity`), and the vector width override rules read (`isa.identity`);
- the code generator: a digest of every source file of `rlxpy.codegen` (so editing a rule, a helper
  or this file invalidates entries), and of the file of each chosen rule defined elsewhere;
- the module name, and per kernel, in order: its symbol, its rule (name and code identity), its
  Spec (every field: what the rule's `emit` may read), and the shapes and dtypes of the arrays it
  receives by pointer.

Constant VALUES are not in it: kernels receive constants by pointer, so one entry serves any
weights of the same shapes. A rule whose code depends on a value puts that value in its Spec.
"""

from __future__ import annotations

import functools
import hashlib
import marshal
import sys
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from .isa import identity as isa_identity
from .rule import spec_key
from .target import host

if TYPE_CHECKING:
    from .kernel import Kernel

VERSION = 2
PACKAGE = Path(__file__).resolve().parent


def sources_digest(root: Path) -> str:
    """SHA-256 over the relative path and text of every Python file under `root`."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        data = path.read_bytes()
        h.update(f"{path.relative_to(root).as_posix()} {len(data)}\n".encode())
        h.update(data)
    return h.hexdigest()


@lru_cache(maxsize=None)
def package_digest() -> str:
    """The digest of rlxpy.codegen's sources, read once per process (code edited after import does
    not run until the process restarts, so it must not change the key either)."""
    return sources_digest(PACKAGE)


def rule_digest(fn) -> str:
    """What identifies a lowering rule's code (a Rule class, or a function) beyond the package
    digest: "" for rlxpy.codegen's own rules, else the digest of the file that defines it, else of
    its compiled code (a rule typed at a prompt)."""
    try:
        return _cached_rule_digest(fn)
    except TypeError:                                 # an unhashable callable: not cached
        return _rule_digest(fn)


@lru_cache(maxsize=None)
def _cached_rule_digest(fn) -> str:
    return _rule_digest(fn)


def _rule_digest(fn) -> str:
    target = fn.func if isinstance(fn, functools.partial) else fn
    module = sys.modules.get(getattr(target, "__module__", None) or "")
    file = getattr(module, "__file__", None)
    if file:
        path = Path(file).resolve()
        if path.is_relative_to(PACKAGE):
            return ""
        try:
            return "file " + hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            pass
    code = getattr(target, "__code__", None)
    if code is not None:
        return "code " + hashlib.sha256(marshal.dumps(code)).hexdigest()
    if isinstance(target, type):                      # a class: the code of its methods
        h = hashlib.sha256()
        for klass in target.__mro__:
            for name, member in sorted(vars(klass).items()):
                if hasattr(member, "__code__"):
                    h.update(name.encode() + marshal.dumps(member.__code__))
        return "class " + h.hexdigest()
    # nothing stable to name it by: a key no later compile repeats, so it never hits
    return f"unidentified {id(fn)} {id(sys.modules)}"


def module_key(name: str, kernels: list["Kernel"]) -> str:
    h = hashlib.sha256()

    def line(text: str) -> None:
        h.update(text.encode())
        h.update(b"\n")

    line(f"rlxpy codegen key {VERSION}")
    line(host().cache_identity())
    line(isa_identity())
    line(f"codegen {package_digest()}")
    line(f"module {name!r}")
    for k in kernels:
        constants = ", ".join(f"{c.dtype}{list(c.shape)}" for c in k.constants)
        line(f"kernel {k.symbol!r} by {k.rule!r} [{k.source}] {spec_key(k.spec)} constants [{constants}]")
    return h.hexdigest()
