"""Live parity with the official sam2 package on random data, for a machine with torch and sam2
installed (tests/data/make_sam2_golden.py says how); CI needs neither, and checks the committed
golden files instead (tests/test_sam2_golden.py).

    python tests/data/check_sam2_parity.py
"""

import sys
from pathlib import Path

import numpy as np
import torch
from sam2.modeling.backbones import image_encoder
from sam2.modeling import position_encoding

import rlxpy
from rlxpy.models.sam2 import FpnNeckConfig, build_fpn_neck_ir

CASES = [
    ("small", dict(image_size=(128, 96), batch=2)),
    ("large", dict(image_size=(64, 64), fuse_type="avg", interp="bilinear", top_down_levels=(1, 2, 3))),
]


def scaled_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual.astype(np.float64) - expected).max()) / (float(np.abs(expected).max()) or 1.0)


def check(variant: str, options: dict, rng: np.random.Generator) -> float:
    cfg = FpnNeckConfig.for_hiera(variant, **options)
    neck = image_encoder.FpnNeck(
        position_encoding=position_encoding.PositionEmbeddingSine(num_pos_feats=256, normalize=True),
        d_model=256, backbone_channel_list=list(cfg.backbone_channel_list), fpn_interp_model=cfg.interp,
        fuse_type=cfg.fuse_type, fpn_top_down_levels=list(cfg.top_down_levels),
    ).eval()
    params = {f"image_encoder.neck.{k}": v.detach().numpy().copy() for k, v in neck.state_dict().items()}
    inputs = {f"x{i}": rng.standard_normal(cfg.input_shape(i)).astype(np.float32) for i in range(4)}
    with torch.no_grad():
        features, pos = neck([torch.from_numpy(inputs[f"x{i}"]).permute(0, 3, 1, 2) for i in range(4)])
    worst = 0.0
    for target in ("interp", "llvm"):
        out = rlxpy.compile(build_fpn_neck_ir(cfg), params, target=target)(**inputs)
        for i in range(4):
            worst = max(worst, scaled_error(out[f"features_{i}"], features[i].numpy()),
                        scaled_error(out[f"pos_{i}"], pos[i].numpy()))
    return worst


def main() -> int:
    rng = np.random.default_rng(0)
    ok = True
    for variant, options in CASES:
        err = check(variant, options, rng)
        ok &= err < 1e-5
        print(f"{variant} {options}: largest error {err:.2e} of the output's scale ({'ok' if err < 1e-5 else 'FAIL'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main())
