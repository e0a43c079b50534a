"""SAM 2's FPN neck: configs, the graph builder and checkpoint loading."""

from .config import HIERA, FpnNeckConfig, HieraConfig
from .neck import build_fpn_neck_ir
from .weights import (load_fpn_neck_weights, save_fpn_neck_weights, synthetic_fpn_neck_inputs,
                      synthetic_fpn_neck_weights)

__all__ = [
    "HIERA", "FpnNeckConfig", "HieraConfig", "build_fpn_neck_ir", "load_fpn_neck_weights",
    "save_fpn_neck_weights", "synthetic_fpn_neck_inputs", "synthetic_fpn_neck_weights",
]
