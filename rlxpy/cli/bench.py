"""`rlxpy bench`: time the SAM 2 neck every way there is, against this machine's FMA floor."""

from __future__ import annotations

import sys

from ..errors import RlxError
from ..files import check_writable
from ..models.sam2 import HIERA, FpnNeckConfig
from . import progress
from .common import parse_image_size, parse_int_list


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench", help="benchmark the SAM 2 neck: rlxpy llvm vs interpreter, numpy, torch, FMA floor",
        description="Time the SAM 2 FPN neck (synthetic weights and inputs) on rlxpy's native kernels, "
                    "the interpreter, numpy (naive and best formulations) and torch conv2d when it is "
                    "installed, interleaved in one process after a warm-up, with every row on the same "
                    "number of threads; and an FMA kernel generated through llvmlite that measures this "
                    "machine's peak, giving the floor. Prints medians.",
    )
    p.add_argument("--config", default="base_plus", choices=list(HIERA), help="Hiera variant (default base_plus)")
    p.add_argument("--image-size", default="1024", metavar="N|HxW", help="image size (default 1024)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="threads for every row (default: the cores available)")
    p.add_argument("--repeat", type=int, default=10, metavar="N", help="timed repeats per row (default 10)")
    p.add_argument("--fuse-type", default="sum", choices=["sum", "avg"])
    p.add_argument("--interp", default="nearest", choices=["nearest", "bilinear"])
    p.add_argument("--top-down-levels", default="2,3", metavar="LIST", help="levels with the top-down path (default 2,3)")
    p.add_argument("--skip", default="", metavar="ROW[,ROW]",
                   help="rows not to run, e.g. 'rlxpy interp,numpy naive'")
    p.add_argument("--sweep", action="store_true",
                   help="instead: rlxpy llvm on growing images (batch 1) and growing batches (at "
                        "--image-size), with the ratio of each time to linear growth")
    p.add_argument("--sweep-sizes", default="512,1024,2048", metavar="LIST", help="square image sides of --sweep")
    p.add_argument("--sweep-batches", default="1,2,4", metavar="LIST", help="batches of --sweep")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--save", metavar="FILE.json", help="also write the JSON to this file")
    p.add_argument("--plot", metavar="FILE.png", help="also draw the table as a bar chart (needs matplotlib)")
    progress.add_progress_option(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from ..benchmark import plot, run_bench, run_sweep, sweep_table, table, to_json
    from ..benchmark.busy import BusyMeter
    from ..benchmark.report import pyplot
    from ..codegen.backend import available_cores

    threads = available_cores() if args.threads is None else args.threads
    if threads < 1:
        raise RlxError(f"--threads must be at least 1, got {threads}")
    if args.repeat < 1:
        raise RlxError(f"--repeat must be at least 1, got {args.repeat}")
    if args.sweep and args.plot:
        raise RlxError("--plot draws the comparison table; it does not apply to --sweep")
    options = dict(fuse_type=args.fuse_type, interp=args.interp,
                   top_down_levels=parse_int_list(args.top_down_levels, "--top-down-levels"))
    size = parse_image_size(args.image_size)
    cfg = FpnNeckConfig.for_hiera(args.config, image_size=size, batch=args.batch, **options)
    save = _open_save(args.save)
    if args.plot:
        check_writable(args.plot, "--plot")
    log = (lambda s: None) if args.json else (lambda s: print(f"rlxpy bench: {s}", file=sys.stderr, flush=True))
    bar = progress.CallbackBar(args, "timing", "call")
    if args.sweep:
        sizes = parse_int_list(args.sweep_sizes, "--sweep-sizes")
        batches = parse_int_list(args.sweep_batches, "--sweep-batches")
        if len(sizes) < 2 or len(batches) < 2:
            raise RlxError("--sweep-sizes and --sweep-batches need at least two values each")
        for b in batches:
            if b < 1:
                raise RlxError(f"--sweep-batches: batch {b} is not positive")
        meter = BusyMeter(threads)
        try:
            sweep = run_sweep(args.config, size, threads, args.repeat, options, sizes=sizes, batches=batches,
                              log=log, progress=bar)
        finally:
            bar.close()
        busy = meter.stop().to_json()
        _save(save, to_json(None, sweep, busy))
        print(to_json(None, sweep, busy) if args.json else sweep_table(sweep, busy))
        return 0
    skip = tuple(s.strip() for s in args.skip.split(",") if s.strip())
    if args.plot:
        pyplot()                                      # missing matplotlib: say so before timing
    try:
        result = run_bench(cfg, threads, args.repeat, skip=skip, log=log, progress=bar)
    finally:
        bar.close()
    if args.plot:
        plot(result, args.plot)
    _save(save, to_json(result, None))
    print(to_json(result, None) if args.json else table(result))
    return 0


def _open_save(path: str | None):
    """The --save file, opened before any timing so a bad path fails at once."""
    if path is None:
        return None
    check_writable(path, "--save")
    try:
        return open(path, "w")
    except OSError as e:
        raise RlxError(f"--save {path}: {e.strerror or e}") from None


def _save(f, text: str) -> None:
    if f is not None:
        with f:
            f.write(text + "\n")
