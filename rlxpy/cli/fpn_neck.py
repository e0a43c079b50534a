"""`rlxpy fpn-neck`: build the SAM 2 FPN neck, compile it and run it, reporting every stage."""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from .. import driver
from ..errors import InputError, RlxError
from ..ir.textio import save_graph
from ..ir.types import TensorType
from ..models.sam2 import (HIERA, FpnNeckConfig, build_fpn_neck_ir, load_fpn_neck_weights,
                           synthetic_fpn_neck_inputs, synthetic_fpn_neck_weights)
from .common import (add_dump_constants_option, add_llvm_options, add_plugin_option, check_output_paths, checked_inputs,
                     dump_constants, load_npz, load_plugins, parse_image_size, parse_int_list, print_comparison,
                     print_outputs, save_npz, seed, target_options)
from .progress import Stages, add_progress_option


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
    add_plugin_option(p)
    p.add_argument("--emit-ir", metavar="OUT.rlx", help="write the neck's graph, before any pass, as textual IR")
    p.add_argument("--dump-dir", metavar="DIR", help="write the IR before and after every pass (and, for llvm, the module's .ll, .opt.ll and .s)")
    add_dump_constants_option(p)
    p.add_argument("--report", action="store_true", help="print the fusion report in full")
    add_progress_option(p)
    add_llvm_options(p)
    p.set_defaults(run=run)


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
    return checked_inputs({f"x{i}": TensorType(cfg.input_shape(i)) for i in range(cfg.num_levels)}, inputs, path)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:9.1f} ms"


def run(args: argparse.Namespace) -> int:
    dumps = dump_constants(args)
    options = target_options(args)                 # bad options and paths are reported before any work
    check_output_paths(args)
    load_plugins(args)
    inputs = load_npz(args.inputs) if args.inputs else None
    _check_x0_layout(inputs, args.inputs, args.config)
    cfg = _config(args, inputs)
    if inputs is not None:
        inputs = _check_inputs(inputs, args.inputs, cfg, args)
    stage = Stages(args, "rlxpy fpn-neck")         # each stage on stderr as it ends, with --progress
    times = stage.times

    with stage("build IR"):
        graph = build_fpn_neck_ir(cfg)
    if args.emit_ir:
        save_graph(graph, args.emit_ir)

    with stage("weights"):
        if args.weights:
            params, weights_from = load_fpn_neck_weights(args.weights, cfg), args.weights
        else:
            params, weights_from = synthetic_fpn_neck_weights(cfg, args.seed), f"synthetic (seed {args.seed})"

    with stage("compile"):
        exe = driver.compile(graph, params=params, target=args.target, pipeline=args.pipeline,
                             dump_dir=args.dump_dir, dump_constants=dumps, **options)
    if inputs is None:                  # after compile, which refuses a neck too large to fit
        inputs, inputs_from = synthetic_fpn_neck_inputs(cfg, args.seed), f"synthetic (seed {args.seed})"
    else:
        inputs_from = args.inputs
    with stage("run"):
        out = exe(**inputs)

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
    for name, seconds in times.items():
        print(f"  {name:<9}{_ms(seconds)}")
    print(f"  {'':<9}{cfg.flops() / times['run'] / 1e9:9.1f} GFLOP/s in run")
    print_outputs(out, "outputs (NCHW float32)")
    if args.compare:
        print_comparison(graph, params, inputs, out)
    if args.out:
        save_npz(args.out, out)
        print(f"wrote {args.out}")
    if args.emit_ir:
        print(f"wrote {args.emit_ir}")
    if args.dump_dir:
        print(f"wrote the IR of every pass to {args.dump_dir}/")
    return 0
