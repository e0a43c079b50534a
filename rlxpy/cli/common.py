"""Helpers shared by the subcommands: parsing sizes, lists and seeds, checksums, the options and the
printed summary of the commands that compile and run a graph."""

from __future__ import annotations

import argparse

import numpy as np

from ..errors import InputError, RlxError
from ..executable import check_inputs
from ..files import check_creatable_dir, check_writable
from ..files import load_npz, save_npz  # noqa: F401  (re-exported for the subcommands)


def parse_image_size(text: str) -> tuple[int, int]:
    """`1024` or `HEIGHTxWIDTH` such as `512x768`."""
    parts = text.lower().split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        dims = []
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2:
        raise RlxError(f"--image-size {text!r}: expected N or HEIGHTxWIDTH, e.g. 1024 or 512x768")
    return dims[0], dims[1]


def parse_int_list(text: str, option: str) -> tuple[int, ...]:
    """`2,3` -> (2, 3); an empty string or `none` -> ()."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        return tuple(int(t) for t in text.split(","))
    except ValueError:
        raise RlxError(f"{option} {text!r}: expected comma-separated integers, e.g. 2,3") from None


def seed(text: str) -> int:
    """An argparse type: numpy's generators take seeds >= 0, so say so at the option."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seed {text!r}: expected an integer >= 0") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"seed {value} is negative: expected an integer >= 0")
    return value


def checked_inputs(types, inputs: dict[str, np.ndarray], path) -> dict[str, np.ndarray]:
    """The arrays of an inputs file checked against `types` (input name -> TensorType) as
    `Executable` checks them (same wording), before any work; an error names the file."""
    try:
        return check_inputs(types, inputs)
    except InputError as e:
        raise InputError(f"inputs file {path}: {e}") from None


def check_output_paths(args) -> None:
    """--out, --emit-ir and --dump-dir (those a command has) checked before any work, so a typo
    does not cost a whole run."""
    if getattr(args, "out", None):
        check_writable(args.out, "--out")
    if getattr(args, "emit_ir", None):
        check_writable(args.emit_ir, "--emit-ir", suffix=".rlx")
    if getattr(args, "dump_dir", None):
        check_creatable_dir(args.dump_dir, "--dump-dir")


def checksum(array: np.ndarray) -> str:
    """A short digest of an array's bytes, for comparing runs by eye."""
    import hashlib
    return hashlib.sha256(memoryview(np.ascontiguousarray(array)).cast("B")).hexdigest()[:12]


def mean_abs(array: np.ndarray, chunk: int = 1 << 20) -> float:
    """mean(|x|) in float64, a chunk at a time: no temporary as large as the array."""
    flat = array.reshape(-1)
    total = sum(float(np.abs(flat[i:i + chunk]).sum(dtype=np.float64)) for i in range(0, flat.size, chunk))
    return total / max(flat.size, 1)


# -- options shared by the commands that compile and run a graph -----------------------------------

LLVM_FLAGS = {"compare": "--compare", "strict": "--strict", "no_cache": "--no-cache", "threads": "--threads"}


def add_llvm_options(p) -> None:
    """--compare, --strict, --no-cache and --threads, in a group of their own."""
    llvm = p.add_argument_group("target llvm")
    llvm.add_argument("--compare", choices=["interp"],
                      help="check every native node against the interpreter on each call, and print "
                           "the largest difference of each output from an interpreter run")
    llvm.add_argument("--strict", action="store_true", help="a node without native code is an error")
    llvm.add_argument("--no-cache", action="store_true", help="do not use the object code cache")
    llvm.add_argument("--threads", type=int, metavar="N", help="threads per kernel (default: available cores)")


def target_options(args) -> dict:
    """Keyword options of driver.compile for the chosen target; llvm flags need --target llvm."""
    given = [flag for key, flag in LLVM_FLAGS.items() if getattr(args, key) not in (None, False)]
    if args.target != "llvm":
        if given:
            raise RlxError(f"{given[0]} applies to --target llvm only")
        return {}
    if args.threads is not None and args.threads < 1:
        raise RlxError(f"--threads must be a positive integer, got {args.threads}")
    return {"strict": args.strict, "cache": not args.no_cache, "compare_with": args.compare,
            "threads": args.threads}


def print_comparison(graph, params, inputs, out) -> None:
    """The largest difference of each output from the interpreter, absolute and of its scale."""
    from .. import driver
    ref = driver.compile(graph, params=params, target="interp")(**inputs)
    width = max([len(name) for name in ref] + [10]) + 1
    print("compare with interp (every native node also checked against its interpreter rule)")
    print(f"  {'output':<{width}}{'max|diff|':>13}{'of scale':>13}")
    for name, expected in ref.items():
        diff = float(np.abs(out[name].astype(np.float64) - expected).max())
        scale = float(np.abs(expected).max()) or 1.0
        print(f"  {name:<{width}}{diff:>13.3e}{diff / scale:>13.3e}")


def print_outputs(out: dict[str, np.ndarray], title: str = "outputs") -> None:
    """One line per output: shape, sum, mean |x| and a sha256 prefix, to compare runs by eye."""
    name_w = max([len(name) for name in out] + [10]) + 1
    shapes = {name: "x".join(map(str, value.shape)) or "scalar" for name, value in out.items()}
    shape_w = max([len(s) for s in shapes.values()] + [17]) + 1
    print(f"{title:<{name_w + shape_w + 6}}sum{'mean|x|':>18}{'sha256[:12]':>18}")
    for name, value in out.items():
        print(f"  {name:<{name_w}}{shapes[name]:<{shape_w}}{value.sum(dtype=np.float64):>16.6e}  "
              f"{mean_abs(value):>12.6e}  {checksum(value)}")


def add_plugin_option(p) -> None:
    p.add_argument("--load-pass-plugin", dest="plugins", action="append", default=[], metavar="FILE.py|MODULE",
                   help="import a Python file or module whose @rlxpy.passes.register'ed passes pipelines may "
                        "then use (repeatable)")


def load_plugins(args) -> None:
    """Load every --load-pass-plugin, in order, before any pipeline is read."""
    from ..passes import load_pass_plugin
    for spec in args.plugins:
        load_pass_plugin(spec)


def add_dump_constants_option(p) -> None:
    p.add_argument("--dump-constants", choices=["none", "small", "all"], default=None,
                   help="constant data in --dump-dir: each large constant once, in the first dump that holds "
                        "it (small, the default; later dumps name that file), in every dump (all), or none")


def dump_constants(args) -> str | None:
    """--dump-constants, which needs --dump-dir."""
    if args.dump_constants is not None and not args.dump_dir:
        raise RlxError("--dump-constants applies with --dump-dir only")
    return args.dump_constants
