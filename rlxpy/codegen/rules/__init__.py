"""Every lowering rule, registered here and nowhere else, in the order they are tried (higher
priority first; among equals, this order).

    op / trait        rules
    fused_matmul      nchw_microkernel (10), channels_last_microkernel (9), gemm
    matmul            channels_last_microkernel (9), gemm
    pointwise ops     pointwise_loop
    transpose         transpose
    view ops          view (an alias: no code)
    pos_encoding      pos_encoding
    attention         attention_flash (30), attention_tile (20), attention_loop
"""

from ..rule import RULES
from .gemm import Gemm
from .gemm_channels_last import ChannelsLastMicrokernel
from .gemm_nchw import NchwMicrokernel
from .layout import Transpose, View
from .pointwise import PointwiseLoop
from .pos_encoding import PosEncoding
from .attention import AttentionLoop
from .attention_tiled import AttentionFlash, AttentionTile

for rule in (NchwMicrokernel(), ChannelsLastMicrokernel(), Gemm(), PointwiseLoop(), Transpose(), View(),
             PosEncoding(), AttentionFlash(), AttentionTile(), AttentionLoop()):
    RULES.add(rule)

__all__ = ["RULES"]
