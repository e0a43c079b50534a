"""Live parity with the official sam2 package on random data. Optional: skipped without torch and
sam2 (tests/data/make_sam2_golden.py says how to install them; the golden-file test always runs)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
image_encoder = pytest.importorskip("sam2.modeling.backbones.image_encoder")
position_encoding = pytest.importorskip("sam2.modeling.position_encoding")

import rlxpy  # noqa: E402
from conftest import scaled_error  # noqa: E402
from rlxpy.models.sam2 import FpnNeckConfig, build_fpn_neck_ir  # noqa: E402


@pytest.mark.parametrize("variant, options", [
    ("small", dict(image_size=(128, 96), batch=2)),
    ("large", dict(image_size=(64, 64), fuse_type="avg", interp="bilinear", top_down_levels=(1, 2, 3))),
])
def test_matches_official_fpn_neck(variant, options, rng):
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
    out = rlxpy.compile(build_fpn_neck_ir(cfg), params)(**inputs)
    for i in range(4):
        assert scaled_error(out[f"features_{i}"], features[i].numpy()) < 1e-5
        assert scaled_error(out[f"pos_{i}"], pos[i].numpy()) < 1e-5
