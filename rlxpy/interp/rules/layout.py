"""Layout ops: views of their operand where numpy gives one."""

from __future__ import annotations

import numpy as np

from ...ir.graph import Node
from . import rule


@rule("transpose", view=True)
def transpose(node: Node, x: np.ndarray) -> np.ndarray:
    return np.transpose(x, node.attrs["perm"])


@rule("reshape", view=True)
def reshape(node: Node, x: np.ndarray) -> np.ndarray:
    return np.reshape(x, node.attrs["shape"])
