"""VGG — K. Simonyan, A. Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
ICLR 2015 (section 2, Table 1; Géron ch. 14; Michelucci ch. 4).

Five blocks of 3×3 convolutions (stride 1, padding 1, ReLU), each closed by a 2×2 max-pool of stride 2,
then FC-4096 → FC-4096 → FC-1000 with dropout 0.5 after the two hidden layers (§3.1). Table 1's configs:

    A (``vgg11``)  conv 64 | 128 | 256×2 | 512×2 | 512×2        11 weight layers
    B (``vgg13``)  conv 64×2 | 128×2 | 256×2 | 512×2 | 512×2    13
    D (``vgg16``)  conv 64×2 | 128×2 | 256×3 | 512×3 | 512×3    16
    E (``vgg19``)  conv 64×2 | 128×2 | 256×4 | 512×4 | 512×4    19

``*_bn`` adds BatchNorm (Ioffe & Szegedy 2015, later than the paper) between each conv and its ReLU.

Parameters (Table 2 rounds them to 133, 133, 138, 144 M; asserted against torchvision and by hand):
vgg11 132,863,336; vgg13 133,047,848; **vgg16 138,357,544** (the "138M" of Michelucci ch. 4; its conv
base 14,714,688 as in Keras' ``include_top=False``, Michelucci ch. 8); vgg19 143,667,240. The ``_bn`` variants
add 2 per conv channel (vgg16_bn 138,365,992).

Module names and order are torchvision's (``features.<i>``, ``avgpool``, ``classifier.<i>``), so its
checkpoints load by name. Stages (``forward_features``): the five blocks, each ending at its max-pool —
64, 128, 256, 512, 512 maps at strides 2, 4, 8, 16, 32.

Differences from the paper, and why:
- ``avgpool`` is an adaptive 7×7 average pool (torchvision's): the identity at 224×224, it lets the
  classifier run on other sizes. The paper instead evaluates larger images densely, the FC layers turned
  into convolutions (§3.2): ``convert.dense_to_conv`` does that once ``avgpool`` is set to an identity
  (``flatten`` is a module here so that it can).
- Not registered: config A-LRN (LRN "does not improve", §4.1) and config C (1×1 convs).
- Initialisation: the paper trained config A from N(0, 10⁻²) and initialised the deeper nets from it
  (or, after submission, with Glorot's scheme, §3.1); here the convolutions get He's normal
  initialisation (fan-out) and the FC layers N(0, 0.01), zero biases — torchvision's choice, which trains
  every depth from scratch.
- Input normalisation: ImageNet mean and std (the paper subtracts the mean RGB value only).
"""

from __future__ import annotations

import torch
from torch import nn

from ..constants import dataset_stats
from .base import PooledFCBackbone, default_cfg, feature_info, sequential_stages
from .registry import Variant, register_variants

# Table 1: the conv widths of each of the five blocks (every conv is 3×3; a max-pool closes each block).
VGG_CONFIGS: dict[str, tuple[tuple[int, ...], ...]] = {
    "A": ((64,), (128,), (256,) * 2, (512,) * 2, (512,) * 2),
    "B": ((64,) * 2, (128,) * 2, (256,) * 2, (512,) * 2, (512,) * 2),
    "D": ((64,) * 2, (128,) * 2, (256,) * 3, (512,) * 3, (512,) * 3),
    "E": ((64,) * 2, (128,) * 2, (256,) * 4, (512,) * 4, (512,) * 4),
}


class VGG(PooledFCBackbone):
    """VGG-11/13/16/19 (configs A, B, D, E of Table 1), optionally with BatchNorm; see the module docstring."""

    def __init__(
        self,
        config: str = "D",
        num_classes: int = 1000,
        in_chans: int = 3,
        batch_norm: bool = False,
        drop_rate: float = 0.5,
    ) -> None:
        super().__init__()
        if config not in VGG_CONFIGS:
            raise ValueError(f"VGG config={config!r}: choose one of {', '.join(VGG_CONFIGS)}")
        self.num_classes, self.drop_rate = num_classes, drop_rate
        layers: list[nn.Module] = []
        self.feature_info = []
        in_chs = in_chans
        for block, widths in enumerate(VGG_CONFIGS[config]):
            for width in widths:
                layers.append(nn.Conv2d(in_chs, width, 3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(width))
                layers.append(nn.ReLU(inplace=True))
                in_chs = width
            layers.append(nn.MaxPool2d(2))
            self.feature_info.append(feature_info(in_chs, 2 ** (block + 1), f"features.{len(layers) - 1}"))
        self.features = nn.Sequential(*layers)
        self._stage_ends = frozenset(int(info["module"].split(".")[1]) for info in self.feature_info)
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(in_chs * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
            nn.Linear(4096, num_classes),
        )
        self.apply(self._init_weights)
        mean, std = dataset_stats("imagenet", in_chans)
        self.default_cfg = default_cfg((in_chans, 224, 224), mean, std, num_classes, "features.0", "classifier.6")

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.01)
            nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return sequential_stages(self.features, x, self._stage_ends)

    def init_output_layer(self, layer: nn.Linear) -> None:
        self._init_weights(layer)


# The variants: each config of Table 1, without and with BatchNorm (name → architecture, description) ------------------
VGG_COUNTS: dict[str, tuple[int, int]] = {  # parameters without / with BatchNorm (= torchvision's)
    "A": (132_863_336, 132_868_840),
    "B": (133_047_848, 133_053_736),
    "D": (138_357_544, 138_365_992),
    "E": (143_667_240, 143_678_248),
}


def _variant(config: str, batch_norm: bool) -> tuple[str, Variant]:
    depth = sum(map(len, VGG_CONFIGS[config])) + 3  # weight layers: the convs and three FC
    architecture, (plain, with_bn) = {"config": config, "batch_norm": batch_norm}, VGG_COUNTS[config]
    if batch_norm:
        return f"vgg{depth}_bn", Variant(architecture, f"VGG-{depth} with BatchNorm ({with_bn:,} parameters).")
    return f"vgg{depth}", Variant(architecture, f"VGG-{depth}, config {config} ({plain:,} parameters).")


register_variants(VGG, dict(_variant(config, batch_norm) for config in VGG_CONFIGS for batch_norm in (False, True)))
