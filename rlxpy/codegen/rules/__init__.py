"""Every lowering rule, registered here and nowhere else, in the order they are tried (higher
priority first; among equals, this order).

    op / trait        rules
    fused_matmul      nchw_microkernel (10), channels_last_microkernel (9), gemm
    matmul            channels_last_microkernel (9), gemm
    pointwise ops     pointwise_loop
    transpose         transpose
    view ops          view (an alias: no code)
    pos_encoding      pos_encoding
"""

from ..rule import RULES
from .gemm import Gemm
from .gemm_channels_last import ChannelsLastMicrokernel
from .gemm_nchw import NchwMicrokernel
from .layout import Transpose, View
from .pointwise import PointwiseLoop
from .pos_encoding import PosEncoding

for rule in (NchwMicrokernel(), ChannelsLastMicrokernel(), Gemm(), PointwiseLoop(), Transpose(), View(),
             PosEncoding()):
    RULES.add(rule)

__all__ = ["RULES"]
