"""`rlxpy fpn-neck`: build the SAM 2 FPN neck, compile it and run it, reporting every stage."""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np

from .. import driver
from ..errors import InputError, RlxError
from ..executable import check_inputs
from ..files import check_creatable_dir, check_writable
from ..ir.textio import save_graph
from ..ir.types import TensorType
from ..models.sam2 import (HIERA, FpnNeckConfig, build_fpn_neck_ir, load_fpn_neck_weights,
                           synthetic_fpn_neck_inputs, synthetic_fpn_neck_weights)
from .common import checksum, load_npz, mean_abs, parse_image_size, parse_int_list, save_npz, seed


def add_parser(sub) -> None:
    p = sub.add_parser(
        "fpn-neck", help="build, compile and run the SAM 2 FPN neck",
        description="Build the SAM 2 FPN neck as an rlxpy graph, compile it and run it. Without "
                    "--weights and --inputs it runs on seeded synthetic weights and inputs.",
    )
    p.add_argument("--config", default="base_plus", choices=list(HIERA), help="Hiera variant (default base_plus)")
    p.add_argument("--image-size", default=None, metavar="N|HxW",
                   help="image size: 1024, or HEIGHTxWIDTH like 512x768; sides multiples of 32 "
                        "(default 1024, or what --inputs implies)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 1, or what --inputs implies)")
    p.add_argument("--weights", metavar="FILE.safetensors", help="checkpoint with image_encoder.neck.convs.* tensors")
    p.add_argument("--inputs", metavar="IN.npz", help="stage outputs x0..x3, BHWC float32")
    p.add_argument("--out", metavar="OUT.npz", help="write features_i and pos_i (NCHW float32)")
    p.add_argument("--target", default="interp", choices=list(driver.TARGETS))
    p.add_argument("--fuse-type", default="sum", choices=["sum", "avg"])
    p.add_argument("--interp", default="nearest", choices=["nearest", "bilinear"])
    p.add_argument("--top-down-levels", default="2,3", metavar="LIST", help="levels with the top-down path (default 2,3)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the synthetic weights and inputs")
    p.add_argument("--pipeline", default="default", help="pass pipeline (see 'rlxpy opt --list-passes')")
    p.add_argument("--emit-ir", metavar="OUT.rlx", help="write the neck's graph, before any pass, as textual IR")
    p.add_argument("--dump-dir", metavar="DIR", help="write the IR before and after every pass (and, for llvm, the module's .ll, .opt.ll and .s)")
    p.add_argument("--report", action="store_true", help="print the fusion report in full")
    llvm = p.add_argument_group("target llvm")
    llvm.add_argument("--compare", choices=["interp"],
                      help="check every native node against the interpreter on each call, and print "
                           "the largest difference of each output from an interpreter run")
    llvm.add_argument("--strict", action="store_true", help="a node without native code is an error")
    llvm.add_argument("--no-cache", action="store_true", help="do not use the object code cache")
    llvm.add_argument("--threads", type=int, metavar="N", help="threads per kernel (default: available cores)")
    p.set_defaults(run=run)


LLVM_FLAGS = {"compare": "--compare", "strict": "--strict", "no_cache": "--no-cache", "threads": "--threads"}


def _target_options(args) -> dict:
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


def _print_comparison(graph, params, inputs, out) -> None:
    """The largest difference of each output from the interpreter, absolute and of its scale."""
    ref = driver.compile(graph, params=params, target="interp")(**inputs)
    print("compare with interp (every native node also checked against its interpreter rule)")
    print("  output         max|diff|     of scale")
    for name, expected in ref.items():
        diff = float(np.abs(out[name].astype(np.float64) - expected).max())
        scale = float(np.abs(expected).max()) or 1.0
        print(f"  {name:<11}{diff:>13.3e}{diff / scale:>13.3e}")


def _config(args, inputs: dict[str, np.ndarray] | None) -> FpnNeckConfig:
    image_size = parse_image_size(args.image_size) if args.image_size else None
    batch = args.batch
    if inputs is not None and "x0" in inputs and inputs["x0"].ndim == 4:
        b, h, w, _ = inputs["x0"].shape          # x0 is at stride 4
        image_size = image_size or (4 * h, 4 * w)
        batch = batch or b
    return FpnNeckConfig.for_hiera(
        args.config, image_size=image_size or (1024, 1024), batch=1 if batch is None else batch,
        fuse_type=args.fuse_type, interp=args.interp,
        top_down_levels=parse_int_list(args.top_down_levels, "--top-down-levels"),
    )


def _check_input_keys(inputs: dict[str, np.ndarray], path: str, cfg: FpnNeckConfig) -> None:
    wanted = [f"x{i}" for i in range(cfg.num_levels)]
    missing = [k for k in wanted if k not in inputs]
    extra = sorted(set(inputs) - set(wanted))
    if missing or extra:
        what = f"missing key '{missing[0]}'" if missing else f"unknown key '{extra[0]}'"
        raise RlxError(f"inputs file {path}: {what}; expected exactly {', '.join(wanted)} (BHWC float32)")


def _looks_nchw(a: np.ndarray, channels: int) -> bool:
    return a.ndim == 4 and a.shape[1] == channels and a.shape[3] != channels


NCHW_HINT = "it looks like NCHW (channels-first; axis 1 holds the {c} channels): transpose it with .transpose(0, 2, 3, 1)"


def _check_x0_layout(inputs: dict[str, np.ndarray] | None, path: str, variant: str) -> None:
    """Before the image size is inferred from x0: an NCHW x0 would imply a nonsense size."""
    x0 = (inputs or {}).get("x0")
    channels = HIERA[variant].embed_dim                    # level 0 is the trunk's first stage
    if x0 is not None and _looks_nchw(x0, channels):
        raise InputError(f"inputs file {path}: input 'x0' has shape {list(x0.shape)}, but the neck takes BHWC "
                         f"(channels-last) [batch, H/4, W/4, {channels}]; " + NCHW_HINT.format(c=channels))


def _size_origin(args, inputs: dict[str, np.ndarray], cfg: FpnNeckConfig) -> str:
    """Where the image size and batch came from, for a message about an input's shape."""
    from_x0 = "x0" in inputs and inputs["x0"].ndim == 4
    size = "from --image-size" if args.image_size else "inferred from x0" if from_x0 else "the default"
    batch = "from --batch" if args.batch is not None else "inferred from x0" if from_x0 else "the default"
    h, w = cfg.image_size
    if size == batch:                    # both inferred, or both defaults
        verb = "are the defaults" if size == "the default" else f"were {size}"
        return f"image size {h}x{w} and batch {cfg.batch} {verb}"
    return f"image size {h}x{w} {size}, batch {cfg.batch} {batch}"


def _check_inputs(inputs: dict[str, np.ndarray], path: str, cfg: FpnNeckConfig, args) -> dict[str, np.ndarray]:
    """The file's arrays checked against the neck before any work, saying the layout expected."""
    _check_input_keys(inputs, path, cfg)
    for i in range(cfg.num_levels):
        a, want, c = inputs[f"x{i}"], cfg.input_shape(i), cfg.channels(i)
        if a.shape == want:
            continue
        message = (f"inputs file {path}: input 'x{i}': expected BHWC (channels-last) shape {list(want)}, got "
                   f"{list(a.shape)}; {_size_origin(args, inputs, cfg)}")
        if _looks_nchw(a, c):
            message += "; " + NCHW_HINT.format(c=c)
        elif a.ndim == 4 and a.shape[3] != c:
            fits = [name for name, h in HIERA.items() if h.channel_list[cfg.conv_index(i)] == a.shape[3]]
            if fits:
                message += f"; {a.shape[3]} channels at level {i} would be --config {' or '.join(fits)}"
        raise InputError(message)
    try:
        return check_inputs({f"x{i}": TensorType(cfg.input_shape(i)) for i in range(cfg.num_levels)}, inputs)
    except InputError as e:
        raise InputError(f"inputs file {path}: {e}") from None


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:9.1f} ms"


def _check_paths(args) -> None:
    """Output paths are checked before any work, so a typo does not cost a whole run."""
    if args.out:
        check_writable(args.out, "--out")
    if args.emit_ir:
        check_writable(args.emit_ir, "--emit-ir", suffix=".rlx")
    if args.dump_dir:
        check_creatable_dir(args.dump_dir, "--dump-dir")


def run(args: argparse.Namespace) -> int:
    _check_paths(args)
    inputs = load_npz(args.inputs) if args.inputs else None
    _check_x0_layout(inputs, args.inputs, args.config)
    cfg = _config(args, inputs)
    if inputs is not None:
        inputs = _check_inputs(inputs, args.inputs, cfg, args)
    times = {}

    t = time.perf_counter()
    graph = build_fpn_neck_ir(cfg)
    times["build IR"] = time.perf_counter() - t
    if args.emit_ir:
        save_graph(graph, args.emit_ir)

    t = time.perf_counter()
    if args.weights:
        params, weights_from = load_fpn_neck_weights(args.weights, cfg), args.weights
    else:
        params, weights_from = synthetic_fpn_neck_weights(cfg, args.seed), f"synthetic (seed {args.seed})"
    times["weights"] = time.perf_counter() - t

    options = _target_options(args)
    t = time.perf_counter()
    exe = driver.compile(graph, params=params, target=args.target, pipeline=args.pipeline,
                         dump_dir=args.dump_dir, **options)
    times["compile"] = time.perf_counter() - t
    if inputs is None:                  # after compile, which refuses a neck too large to fit
        inputs, inputs_from = synthetic_fpn_neck_inputs(cfg, args.seed), f"synthetic (seed {args.seed})"
    else:
        inputs_from = args.inputs

    t = time.perf_counter()
    out = exe(**inputs)
    times["run"] = time.perf_counter() - t

    ops = Counter(n.op for n in graph.nodes)
    print(f"rlxpy fpn-neck: {cfg.describe()}")
    print(f"  weights  {weights_from}")
    print(f"  inputs   {inputs_from}: " + "  ".join(f"{k} {list(v.shape)}" for k, v in inputs.items()))
    print(f"  graph    @{graph.name}: {len(graph)} nodes ({', '.join(f'{n} {o}' for o, n in ops.items())})")
    print(f"  work     {cfg.flops() / 1e9:.2f} GFLOP in the four 1x1 convs")
    optimised = Counter(n.op for n in exe.graph.nodes)
    print(f"  passes   '{exe.pipeline}' -> {len(exe.graph)} nodes ({', '.join(f'{n} {o}' for o, n in optimised.items())})")
    report = exe.fusion_report().splitlines()
    print(f"  fusion   {report[0]}")
    for line in report[1:] if args.report else [line for line in report[1:] if "missed" in line]:
        print(f"         {line}")
    print(f"  target   {exe.target}")
    print("  " + exe.report().replace("\n", "\n  "))
    print("stages")
    for stage, seconds in times.items():
        print(f"  {stage:<9}{_ms(seconds)}")
    print(f"  {'':<9}{cfg.flops() / times['run'] / 1e9:9.1f} GFLOP/s in run")
    print("outputs (NCHW float32)             sum           mean|x|       sha256[:12]")
    for name, value in out.items():
        shape = "x".join(map(str, value.shape))
        print(f"  {name:<11}{shape:<18}{value.sum(dtype=np.float64):>16.6e}  {mean_abs(value):>12.6e}  {checksum(value)}")
    if args.compare:
        _print_comparison(graph, params, inputs, out)
    if args.out:
        save_npz(args.out, out)
        print(f"wrote {args.out}")
    if args.emit_ir:
        print(f"wrote {args.emit_ir}")
    if args.dump_dir:
        print(f"wrote the IR of every pass to {args.dump_dir}/")
    return 0
