import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/reference.py and friends


def scaled_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """Largest absolute difference relative to the largest magnitude of the expected value."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = float(np.abs(expected).max()) or 1.0
    return float(np.abs(actual.astype(np.float64) - expected).max()) / scale


@pytest.fixture
def rng(request):
    """A generator seeded from the test's name: random, yet the same on every run."""
    import zlib
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def legacy(bias=False, perm=(), upsample="none", factor=1.0):
    """fused_matmul attributes from the former closed epilogue (bias -> perm -> upsample -> scale):
    the same computation as an epilogue list on the stored layout."""
    from rlxpy.ir.ops import Step
    steps = []
    if bias:
        steps.append(Step.of("bias_add", axis=perm.index(len(perm) - 1) if perm else -1))
    if upsample != "none":
        steps.append(Step.of("upsample_add", mode=upsample))
    if factor != 1.0:
        steps.append(Step.of("scale", factor=factor))
    return {"perm": tuple(perm), "epilogue": tuple(steps)}
