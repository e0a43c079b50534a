"""Regenerate the golden outputs of the official SAM 2 FpnNeck (needs torch and the sam2 package).

    pip install torch==2.13.0 hydra-core iopath && SAM2_BUILD_CUDA=0 pip install --no-deps sam2
    python tests/data/make_sam2_golden.py

Each case's inputs and weights come from `reference.golden_case_data` (integer hashing, so the test
can rebuild them exactly); the file stores the case's config and the official module's outputs.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from sam2.modeling.backbones.image_encoder import FpnNeck
from sam2.modeling.position_encoding import PositionEmbeddingSine

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
from reference import CHANNELS, golden_case_data  # noqa: E402

CASES = {
    "tiny_32x64_b2_sum_nearest": dict(variant="tiny", image_size=(32, 64), batch=2, fuse_type="sum",
                                      interp="nearest", top_down_levels=[2, 3]),
    "base_plus_64x32_avg_bilinear_all": dict(variant="base_plus", image_size=(64, 32), batch=1, fuse_type="avg",
                                             interp="bilinear", top_down_levels=[0, 1, 2, 3]),
}


def official_outputs(case: dict) -> dict[str, np.ndarray]:
    xs, params = golden_case_data(case["variant"], tuple(case["image_size"]), case["batch"])
    neck = FpnNeck(
        position_encoding=PositionEmbeddingSine(num_pos_feats=256, normalize=True, temperature=10000),
        d_model=256, backbone_channel_list=CHANNELS[case["variant"]], fpn_interp_model=case["interp"],
        fuse_type=case["fuse_type"], fpn_top_down_levels=case["top_down_levels"],
    ).eval()
    state = {k.removeprefix("image_encoder.neck."): torch.from_numpy(v) for k, v in params.items()}
    neck.load_state_dict(state)
    with torch.no_grad():
        features, pos = neck([torch.from_numpy(x).permute(0, 3, 1, 2) for x in xs])
    out = {}
    for i in range(4):
        out[f"features_{i}"] = features[i].numpy().astype(np.float32)
        out[f"pos_{i}"] = pos[i].numpy().astype(np.float32)
    return out


if __name__ == "__main__":
    for name, case in CASES.items():
        out = official_outputs(case)
        meta = dict(case, torch=torch.__version__)
        np.savez_compressed(HERE / f"sam2_golden_{name}.npz", config=np.array(json.dumps(meta)), **out)
        print(name, {k: v.shape for k, v in out.items()})
