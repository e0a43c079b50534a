"""Loading the neck's weights from safetensors: conversions and every error the issue names."""

import json
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file

from rlxpy import WeightsError
import rlxpy
from rlxpy.models.sam2 import FpnNeckConfig, load_fpn_neck_weights, save_fpn_neck_weights

CFG = FpnNeckConfig.for_hiera("tiny", image_size=64)
W0 = "image_encoder.neck.convs.0.conv.weight"
B2 = "image_encoder.neck.convs.2.conv.bias"


def random_params(rng):
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in CFG.param_shapes().items()}


def test_round_trip_ignores_other_keys(tmp_path, rng):
    params = random_params(rng)
    extra = {"image_encoder.trunk.blocks.0.norm1.weight": rng.standard_normal(96).astype(np.float32),
             "sam_mask_decoder.foo": np.arange(3, dtype=np.int64)}
    save_file({**params, **extra}, str(tmp_path / "ckpt.safetensors"))
    loaded = load_fpn_neck_weights(tmp_path / "ckpt.safetensors", CFG)
    assert set(loaded) == set(params)
    for k in params:
        assert loaded[k].dtype == np.float32 and np.array_equal(loaded[k], params[k])


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_other_float_dtypes_are_converted(tmp_path, rng, dtype):
    params = {k: v.astype(dtype) for k, v in random_params(rng).items()}
    save_fpn_neck_weights(tmp_path / "w.safetensors", params)
    loaded = load_fpn_neck_weights(tmp_path / "w.safetensors", CFG)
    for k in params:
        assert loaded[k].dtype == np.float32
        np.testing.assert_array_equal(loaded[k], params[k].astype(np.float32))


def write_bf16(path, tensors: dict[str, np.ndarray]):
    """A safetensors file with BF16 tensors (numpy cannot save those), given as float32."""
    header, blobs, offset = {}, [], 0
    for key, value in tensors.items():
        words = (value.astype(np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
        header[key] = {"dtype": "BF16", "shape": list(value.shape), "data_offsets": [offset, offset + len(words)]}
        blobs.append(words)
        offset += len(words)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def test_bfloat16_is_converted(tmp_path, rng):
    params = random_params(rng)
    write_bf16(tmp_path / "bf.safetensors", params)
    loaded = load_fpn_neck_weights(tmp_path / "bf.safetensors", CFG)
    for k, v in params.items():
        truncated = (v.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)
        assert np.array_equal(loaded[k], truncated), k
        assert np.abs(loaded[k] - v).max() <= np.abs(v).max() / 128  # bf16 keeps 8 bits


def test_missing_key_names_key_file_and_shape(tmp_path, rng):
    params = random_params(rng)
    del params[B2]
    path = tmp_path / "w.safetensors"
    save_fpn_neck_weights(path, params)
    with pytest.raises(WeightsError) as e:
        load_fpn_neck_weights(path, CFG)
    assert f"key '{B2}' is missing from {path}" in str(e.value) and "[256]" in str(e.value)


def test_missing_key_hints_at_a_near_name(tmp_path, rng):
    params = {k.removeprefix("image_encoder."): v for k, v in random_params(rng).items()}
    save_fpn_neck_weights(tmp_path / "w.safetensors", params)
    with pytest.raises(WeightsError, match="found similar key 'neck.convs.0.conv.weight'"):
        load_fpn_neck_weights(tmp_path / "w.safetensors", CFG)


def test_wrong_shape_names_expected_and_actual(tmp_path, rng):
    params = random_params(rng)
    params[W0] = rng.standard_normal((256, 767, 1, 1)).astype(np.float32)   # one channel short
    path = tmp_path / "w.safetensors"
    save_fpn_neck_weights(path, params)
    with pytest.raises(WeightsError) as e:
        load_fpn_neck_weights(path, CFG)
    assert str(e.value) == f"key '{W0}' in {path}: expected shape [256, 768, 1, 1], got [256, 767, 1, 1]"


def test_non_float_dtype_is_rejected(tmp_path, rng):
    params = random_params(rng)
    params[B2] = rng.integers(-5, 5, 256).astype(np.int32)
    path = tmp_path / "w.safetensors"
    save_fpn_neck_weights(path, params)
    with pytest.raises(WeightsError, match=rf"key '{B2}' in {path}: dtype I32 is not a float type"):
        load_fpn_neck_weights(path, CFG)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_rejected(tmp_path, rng, bad):
    params = random_params(rng)
    params[W0][7, 3, 0, 0] = bad
    path = tmp_path / "w.safetensors"
    save_fpn_neck_weights(path, params)
    with pytest.raises(WeightsError, match=rf"key '{W0}' in {path}: 1 value\(s\) are NaN or Inf"):
        load_fpn_neck_weights(path, CFG)


def test_unreadable_files(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_fpn_neck_weights(tmp_path / "absent.safetensors", CFG)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(WeightsError, match=f"weights file {junk}: not a readable safetensors file"):
        load_fpn_neck_weights(junk, CFG)


def test_compile_checks_params_too(rng):
    from rlxpy.models.sam2 import build_fpn_neck_ir
    graph = build_fpn_neck_ir(CFG)
    params = random_params(rng)
    with pytest.raises(WeightsError, match=r"unknown param\(s\) 'typo'"):
        rlxpy.compile(graph, {**params, "typo": np.ones(3)})
    missing = dict(params)
    del missing[W0]
    with pytest.raises(WeightsError, match=rf"missing param '{W0}' \(expected shape \[256, 768, 1, 1\]\)"):
        rlxpy.compile(graph, missing)
    with pytest.raises(WeightsError, match=rf"param '{B2}': expected shape \[256\], got \[255\]"):
        rlxpy.compile(graph, {**params, B2: np.ones(255, np.float32)})
    with pytest.raises(WeightsError, match=rf"param '{B2}': dtype int64 is not a float type"):
        rlxpy.compile(graph, {**params, B2: np.ones(256, np.int64)})
