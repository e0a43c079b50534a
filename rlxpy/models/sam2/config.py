"""Configurations of SAM 2's Hiera image encoders and of the FPN neck on top of them."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import RlxError


@dataclass(frozen=True)
class HieraConfig:
    """The Hiera trunk's facts the neck depends on (from the SAM 2.1 model configs)."""

    name: str
    embed_dim: int                  # channels of stage 0; doubled at every later stage
    stages: tuple[int, ...]         # blocks per stage (shown for reference)

    @property
    def channel_list(self) -> tuple[int, ...]:
        """Stage channels coarse -> fine, the order of SAM 2's `backbone_channel_list`."""
        return tuple(self.embed_dim * 2**s for s in reversed(range(len(self.stages))))


HIERA = {
    "tiny": HieraConfig("tiny", 96, (1, 2, 7, 2)),
    "small": HieraConfig("small", 96, (1, 2, 11, 2)),
    "base_plus": HieraConfig("base_plus", 112, (2, 3, 16, 3)),
    "large": HieraConfig("large", 144, (2, 6, 36, 4)),
}

STRIDES = (4, 8, 16, 32)                 # of the four stage outputs, fine -> coarse
CHECKPOINT_PREFIX = "image_encoder.neck.convs"


@dataclass(frozen=True)
class FpnNeckConfig:
    """Everything that fixes the neck's graph: variant, input sizes and the FpnNeck options.

    Level i = 0..3 is the stage output at stride 4, 8, 16, 32 (fine -> coarse). Level i is
    projected by checkpoint conv `convs[3 - i]`, because `backbone_channel_list` runs coarse -> fine.
    """

    variant: str
    image_size: tuple[int, int] = (1024, 1024)   # (height, width) of the image the trunk saw
    batch: int = 1
    fuse_type: str = "sum"                       # "sum" or "avg" (halve where the top-down add happens)
    interp: str = "nearest"                      # upsampling of the top-down path: "nearest" or "bilinear"
    top_down_levels: tuple[int, ...] = (2, 3)    # levels that receive the top-down path
    d_model: int = 256
    scalp: int = 1                               # the image encoder drops this many coarsest levels after the neck
    temperature: float = 10000.0                 # of the sine position encoding
    backbone_channel_list: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        if self.variant not in HIERA:
            raise RlxError(f"unknown Hiera variant {self.variant!r}; expected one of {', '.join(HIERA)}")
        object.__setattr__(self, "backbone_channel_list", HIERA[self.variant].channel_list)
        size = self.image_size
        if isinstance(size, int) and not isinstance(size, bool):
            size = (size, size)
        size = tuple(size)
        if len(size) != 2 or any(not isinstance(s, int) or isinstance(s, bool) or s < 32 or s % 32 for s in size):
            raise RlxError(f"image_size must be (height, width) with sides positive multiples of 32, got {self.image_size!r}")
        object.__setattr__(self, "image_size", size)
        if not isinstance(self.batch, int) or isinstance(self.batch, bool) or self.batch < 1:
            raise RlxError(f"batch must be an integer >= 1, got {self.batch!r}")
        if self.fuse_type not in ("sum", "avg"):
            raise RlxError(f"fuse_type must be 'sum' or 'avg', got {self.fuse_type!r}")
        if self.interp not in ("nearest", "bilinear"):
            raise RlxError(f"interp must be 'nearest' or 'bilinear', got {self.interp!r}")
        levels = tuple(self.top_down_levels)
        n = len(STRIDES)
        if any(not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < n for i in levels) or len(set(levels)) != len(levels):
            raise RlxError(f"top_down_levels must be distinct levels in 0..{n - 1}, got {self.top_down_levels!r}")
        object.__setattr__(self, "top_down_levels", tuple(sorted(levels)))
        if self.d_model < 4 or self.d_model % 4:
            raise RlxError(f"d_model must be a positive multiple of 4, got {self.d_model}")

    @classmethod
    def for_hiera(cls, variant: str, image_size: int | tuple[int, int] = (1024, 1024), batch: int = 1,
                  **options) -> "FpnNeckConfig":
        """The neck SAM 2.1 puts on Hiera `variant` ("tiny", "small", "base_plus", "large")."""
        return cls(variant, image_size, batch, **options)

    @property
    def num_levels(self) -> int:
        return len(STRIDES)

    def level_hw(self, level: int) -> tuple[int, int]:
        """(height, width) of level `level`'s feature map."""
        return self.image_size[0] // STRIDES[level], self.image_size[1] // STRIDES[level]

    def conv_index(self, level: int) -> int:
        return self.num_levels - 1 - level

    def channels(self, level: int) -> int:
        """Input channels of level `level` (stage `level` of the trunk)."""
        return self.backbone_channel_list[self.conv_index(level)]

    def input_shape(self, level: int) -> tuple[int, int, int, int]:
        """BHWC shape of input `x{level}`."""
        h, w = self.level_hw(level)
        return self.batch, h, w, self.channels(level)

    def output_shape(self, level: int) -> tuple[int, int, int, int]:
        """NCHW shape of `features_{level}` and `pos_{level}`."""
        h, w = self.level_hw(level)
        return self.batch, self.d_model, h, w

    @staticmethod
    def weight_key(conv: int) -> str:
        return f"{CHECKPOINT_PREFIX}.{conv}.conv.weight"

    @staticmethod
    def bias_key(conv: int) -> str:
        return f"{CHECKPOINT_PREFIX}.{conv}.conv.bias"

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Checkpoint key -> shape of every tensor the neck needs."""
        shapes = {}
        for j, cin in enumerate(self.backbone_channel_list):
            shapes[self.weight_key(j)] = (self.d_model, cin, 1, 1)
            shapes[self.bias_key(j)] = (self.d_model,)
        return shapes

    def flops(self) -> int:
        """Multiply-adds x 2 of the four 1x1 convs (the neck's work)."""
        total = 0
        for i in range(self.num_levels):
            b, h, w, c = self.input_shape(i)
            total += 2 * b * h * w * c * self.d_model
        return total

    def describe(self) -> str:
        h, w = self.image_size
        return (f"hiera-{self.variant} image {h}x{w} batch {self.batch}, fuse_type={self.fuse_type}, "
                f"interp={self.interp}, top_down_levels={list(self.top_down_levels)}, "
                f"d_model={self.d_model}, scalp={self.scalp}")
