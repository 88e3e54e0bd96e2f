"""Feature-pyramid necks: the backbone's stages mixed so that every detection scale sees fine detail and context.

- ``fpn``: the top-down pathway with lateral connections of Lin et al. 2017 (FPN, Sec. 3): each stage projected to
  ``channels`` by a 1×1 convolution, the coarser level upsampled (nearest) and added, a 3×3 convolution on each
  sum — ``torchvision.ops.FeaturePyramidNetwork``.
- ``pan``: FPN followed by PANet's bottom-up path augmentation (Liu et al. 2018, Sec. 3.1): N₁ = P₁, then
  N_{i+1} = conv3×3(conv3×3_stride2(N_i) + P_{i+1}) — the finest level's localisation carried back up, as YOLOv4's
  neck (Bochkovskiy et al. 2020, Sec. 3.4) does. Needs each stage at twice the stride of the one before.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork

from ..errors import ConfigError
from ..models.layers import ConvNormAct

NECKS = ("none", "fpn", "pan")


class FeaturePyramidNeck(nn.Module):
    """Feature maps of stages with ``in_channels`` at ``strides`` (finest first) → as many maps of ``channels``."""

    def __init__(self, in_channels: Sequence[int], strides: Sequence[int], channels: int, bottom_up: bool) -> None:
        super().__init__()
        if bottom_up and any(coarse != 2 * fine for fine, coarse in zip(strides, strides[1:], strict=False)):
            raise ConfigError(f"task.head.neck=pan needs each stride twice the one before; got strides {list(strides)}")
        self.top_down = FeaturePyramidNetwork(list(in_channels), channels)
        levels = len(in_channels) - 1 if bottom_up else 0
        self.downsample = nn.ModuleList(ConvNormAct(channels, channels, 3, stride=2) for _ in range(levels))
        self.merge = nn.ModuleList(ConvNormAct(channels, channels, 3) for _ in range(levels))

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        pyramid = list(self.top_down(OrderedDict((str(i), x) for i, x in enumerate(features))).values())
        outputs = pyramid[:1]
        for down, merge, lateral in zip(self.downsample, self.merge, pyramid[1:], strict=False):
            outputs.append(merge(down(outputs[-1]) + lateral))
        return outputs if self.downsample else pyramid


def build_neck(kind: str, in_channels: Sequence[int], strides: Sequence[int], channels: int) -> nn.Module | None:
    """The neck ``kind`` names (``none``: no neck), checked."""
    if kind not in NECKS:
        raise ConfigError(f"task.head.neck must be one of {', '.join(NECKS)}; got {kind!r}")
    return None if kind == "none" else FeaturePyramidNeck(in_channels, strides, channels, bottom_up=kind == "pan")
