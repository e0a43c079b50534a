"""The SAM 2 FPN neck end to end from a safetensors checkpoint.

    python examples/fpn_neck_from_safetensors.py [CHECKPOINT.safetensors] [--variant base_plus]

Without a checkpoint it writes one with seeded random weights first, so it runs anywhere. A real
SAM 2 checkpoint is a torch pickle; convert it once with torch installed:

    import torch, safetensors.torch
    sd = torch.load("sam2.1_hiera_base_plus.pt", map_location="cpu")["model"]
    safetensors.torch.save_file(sd, "sam2.1_hiera_base_plus.safetensors")
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import rlxpy
from rlxpy.models.sam2 import (FpnNeckConfig, build_fpn_neck_ir, load_fpn_neck_weights,
                               save_fpn_neck_weights, synthetic_fpn_neck_weights)

parser = argparse.ArgumentParser()
parser.add_argument("checkpoint", nargs="?")
parser.add_argument("--variant", default="base_plus")
parser.add_argument("--image-size", type=int, default=512)
args = parser.parse_args()

cfg = FpnNeckConfig.for_hiera(args.variant, image_size=(args.image_size, args.image_size), batch=1)
path = args.checkpoint
if path is None:
    path = str(Path(tempfile.mkdtemp()) / "neck.safetensors")
    save_fpn_neck_weights(path, synthetic_fpn_neck_weights(cfg, seed=0))
    print(f"wrote random weights to {path}")

graph = build_fpn_neck_ir(cfg)                     # params unbound, named by checkpoint keys
params = load_fpn_neck_weights(path, cfg)          # only the neck's 8 tensors are read
print(f"read {len(params)} tensors from {path}:")
for key, value in params.items():
    print(f"  {key:<40} {list(value.shape)}")
exe = rlxpy.compile(graph, params=params, target="interp")

rng = np.random.default_rng(0)
stages = {f"x{i}": rng.standard_normal(cfg.input_shape(i), dtype=np.float32) for i in range(4)}
t = time.perf_counter()
out = exe(**stages)                                 # BHWC in, NCHW out, fine -> coarse
print(f"{cfg.describe()}: ran in {(time.perf_counter() - t) * 1e3:.1f} ms")
for name, value in out.items():
    print(f"  {name:<11} {str(list(value.shape)):<17} mean {value.mean():+.5f}  std {value.std():.5f}")
