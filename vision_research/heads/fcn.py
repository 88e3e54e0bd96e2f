"""FCN-32s / 16s / 8s: Long, Shelhamer & Darrell, "Fully Convolutional Networks for Semantic Segmentation" (2015).

One head, parameterised by the strides it fuses (Sec. 4.2, Fig. 3): class scores from the deepest stage
(through a convolutionalised "fc" block, Sec. 3.1), upsampled ×2 by a transposed convolution and summed
with 1×1 class scores of the stage at stride 16 (FCN-16s), then once more with stride 8 (FCN-8s); a
final transposed convolution upsamples to the input size. The head reads only the backbone's
``feature_info`` (channels and reductions), so it fits any backbone of the framework or of timm.

As in the paper: transposed convolutions are initialised to bilinear interpolation (the fusion ones
learned, the final one fixed — both configurable), the skip score layers start at zero so that training
begins from the coarser net, and the "fc" block has dropout. Differences: the paper pads the input by 100
pixels and crops with offsets computed for VGG; here each upsampled map is cropped by half its stride —
which makes a bilinear transposed convolution equal to ``F.interpolate(mode="bilinear",
align_corners=False)`` — so any backbone and any input size (not only multiples of 32) give an output of
exactly the input's size. The fc block defaults to a 3×3 convolution with 512 channels instead of VGG's
7×7 / 4096 (``hidden_kernel=7, hidden_channels=4096`` restores it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .stages import select_stages

VARIANTS = {"32s": (32,), "16s": (32, 16), "8s": (32, 16, 8)}


def bilinear_kernel(channels: int, factor: int) -> torch.Tensor:
    """Weights [C, C, 2f, 2f] of a transposed convolution that upsamples each channel ×``factor`` bilinearly."""
    size = 2 * factor
    centre = factor - 0.5
    profile = 1 - (torch.arange(size, dtype=torch.float64) - centre).abs() / factor
    kernel = (profile[:, None] * profile[None, :]).float()
    weight = torch.zeros(channels, channels, size, size)
    weight[range(channels), range(channels)] = kernel
    return weight


class BilinearUpsample(nn.Module):
    """A transposed convolution ×``factor`` initialised to bilinear interpolation, cropped to a given size.

    Kernel 2f, stride f, no padding: an h×w map becomes (h+1)f × (w+1)f, of which the window starting at
    f/2 is the bilinear interpolation with ``align_corners=False`` (exact away from the border). A map too
    small for the requested size (a backbone that floors odd sizes) is first extended by replicating its edge.
    """

    def __init__(self, channels: int, factor: int, trainable: bool) -> None:
        super().__init__()
        if factor < 2 or factor % 2:
            raise ConfigError(f"FCN upsampling factors must be even; a backbone stage ratio of {factor} is not")
        self.factor = factor
        self.deconv = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, bias=False)
        with torch.no_grad():
            self.deconv.weight.copy_(bilinear_kernel(channels, factor))
        self.deconv.weight.requires_grad_(trainable)

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        height, width = size
        factor, offset = self.factor, self.factor // 2
        # Backbones that floor odd sizes (max-pooling VGG) can leave the map a cell short: extend its edge.
        missing_h = max(0, math.ceil((height + offset) / factor) - 1 - x.shape[-2])
        missing_w = max(0, math.ceil((width + offset) / factor) - 1 - x.shape[-1])
        if missing_h or missing_w:
            x = F.pad(x, (0, missing_w, 0, missing_h), mode="replicate")
        return self.deconv(x)[..., offset : offset + height, offset : offset + width]


class FCNHead(nn.Module):
    """Pixel-wise class scores from backbone features: FCN-32s, -16s or -8s (``variant``) or any ``strides``."""

    def __init__(
        self,
        feature_info: Sequence[dict[str, Any]],
        num_classes: int,
        variant: str = "8s",
        strides: Sequence[int] | None = None,
        hidden_channels: int = 512,
        hidden_kernel: int = 3,
        dropout: float = 0.5,
        learn_fusion_upsampling: bool = True,
        learn_final_upsampling: bool = False,
    ) -> None:
        super().__init__()
        if strides is None:
            if variant not in VARIANTS:
                raise ConfigError(f"FCN variant must be one of {', '.join(VARIANTS)}; got '{variant}'")
            strides = VARIANTS[variant]
        strides = tuple(strides)
        if list(strides) != sorted(strides, reverse=True):
            raise ConfigError(f"FCN strides go from coarse to fine, e.g. (32, 16, 8); got {strides}")
        self.strides, self.stages = strides, select_stages(feature_info, strides)
        deepest = feature_info[self.stages[0]]["num_chs"]
        self.fc = nn.Sequential(  # fc6 / fc7 of the classifier, convolutionalised (Sec. 3.1)
            nn.Conv2d(deepest, hidden_channels, hidden_kernel, padding=hidden_kernel // 2),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
            nn.Conv2d(hidden_channels, hidden_channels, 1),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
        )
        self.score = nn.Conv2d(hidden_channels, num_classes, 1)
        self.skip_scores = nn.ModuleList()
        self.fusion_upsamplers = nn.ModuleList()
        for coarse, fine, stage in zip(strides, strides[1:], self.stages[1:], strict=False):
            skip = nn.Conv2d(feature_info[stage]["num_chs"], num_classes, 1)
            nn.init.zeros_(skip.weight)  # Sec. 4.2: start from the coarser net's prediction
            nn.init.zeros_(skip.bias)
            self.skip_scores.append(skip)
            self.fusion_upsamplers.append(BilinearUpsample(num_classes, coarse // fine, learn_fusion_upsampling))
        self.final_upsampler = BilinearUpsample(num_classes, strides[-1], learn_final_upsampling)

    def forward(self, features: Sequence[torch.Tensor], output_size: Sequence[int]) -> torch.Tensor:
        scores = self.score(self.fc(features[self.stages[0]]))
        for stage, skip, upsample in zip(self.stages[1:], self.skip_scores, self.fusion_upsamplers, strict=True):
            fine = features[stage]
            scores = upsample(scores, fine.shape[-2:]) + skip(fine)
        return self.final_upsampler(scores, output_size)


class AuxiliaryHead(nn.Module):
    """A small per-pixel classifier on an intermediate stage (deep supervision as in PSPNet / torchvision's FCN)."""

    def __init__(self, in_chans: int, num_classes: int, stride: int, hidden_channels: int = 256) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_chans, hidden_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden_channels),
            nn.ReLU(inplace=True),
            nn.Dropout2d(0.1),
            nn.Conv2d(hidden_channels, num_classes, 1),
        )
        self.upsample = BilinearUpsample(num_classes, stride, trainable=False)

    def forward(self, feature: torch.Tensor, output_size: Sequence[int]) -> torch.Tensor:
        return self.upsample(self.block(feature), output_size)
