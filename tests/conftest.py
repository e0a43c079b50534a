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
