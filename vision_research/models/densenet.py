"""DenseNet-BC — G. Huang, Z. Liu, L. van der Maaten, K. Q. Weinberger, "Densely Connected Convolutional
Networks", CVPR 2017 (§3, Table 1). The books name dense blocks and transitions only (Géron ch. 14); the
growth rate and block sizes are the paper's.

    In 3×224×224 ─ conv 7×7/2 (2k maps) ─ BN ─ ReLU ─ max-pool 3×3/2                       (56², /4)
               ─ dense block 1 ─ transition ─ dense block 2 ─ transition ─ dense block 3
               ─ transition ─ dense block 4 ─ BN ─ ReLU ─ global average pool ─ fc 1000     (7², /32)

    Dense layer ℓ (the composite function H_ℓ with a bottleneck, "DenseNet-B"): BN ─ ReLU ─ conv 1×1
    (bn_size·k maps) ─ BN ─ ReLU ─ conv 3×3 (k maps); its input is the concatenation of the block input and
    every earlier layer's k new maps. Transition ("DenseNet-C"): BN ─ ReLU ─ conv 1×1 to ⌊θ·m⌋ maps ─
    average pool 2×2/2, compression θ = 0.5.

    Table 1's ImageNet models (growth rate k = 32, bn_size 4, θ = 0.5, stem 64 maps):

    name         layers per block   parameters
    densenet121  6, 12, 24, 16       7,978,856
    densenet169  6, 12, 32, 32      14,149,480
    densenet201  6, 12, 48, 32      20,013,928
    densenet161  6, 12, 36, 24      28,681,000   (k = 48, stem 96 maps)

The module names and the parameter counts are torchvision's, so its state dicts load by name (the keys
``denselayer1.norm.1.weight`` of its older checkpoint files are renamed by ``remap_state_dict``); timm's
``densenet121`` uses the same names. He-normal initialisation (the paper cites He et al. for it).

Differences from the paper: none in the layers. ``drop_rate`` drops each dense layer's new maps (after the 3×3
conv), as torchvision does; the paper's CIFAR/SVHN runs without augmentation put dropout 0.2 after every conv
but the first, and its ImageNet models use none (the default here). ``bn_size=0`` removes the bottleneck
(plain DenseNet: BN ─ ReLU ─ conv 3×3) and ``compression=1.0`` the compression, for the paper's B/C ablation.

Stages (``forward_features``): each dense block's output — reductions 4, 8, 16, 32 — the last after the
final batch norm (norm5), as the classifier reads it.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..constants import dataset_stats
from .base import Backbone, default_cfg, feature_info
from .registry import Variant, register_variants

# Keys of torchvision's older DenseNet checkpoints: "denselayer1.norm.1.weight" for "denselayer1.norm1.weight".
_LEGACY_DENSE_LAYER_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12])\.([a-z_]+)$")


class DenseLayer(nn.Module):
    """H_ℓ: BN ─ ReLU ─ conv 1×1 (bn_size·k) ─ BN ─ ReLU ─ conv 3×3 (k) ─ [dropout]; returns the k new maps.

    ``bn_size=0``: no bottleneck (BN ─ ReLU ─ conv 3×3), the paper's plain DenseNet layer.
    """

    def __init__(self, in_chs: int, growth_rate: int, bn_size: int = 4, drop_rate: float = 0.0) -> None:
        super().__init__()
        mid_chs = in_chs
        if bn_size:
            mid_chs = bn_size * growth_rate
            self.norm1 = nn.BatchNorm2d(in_chs)
            self.relu1 = nn.ReLU(inplace=True)
            self.conv1 = nn.Conv2d(in_chs, mid_chs, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(mid_chs)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(mid_chs, growth_rate, 3, padding=1, bias=False)
        self.bottleneck, self.drop_rate = bool(bn_size), drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bottleneck:
            x = self.conv1(self.relu1(self.norm1(x)))
        x = self.conv2(self.relu2(self.norm2(x)))
        return F.dropout(x, self.drop_rate, self.training) if self.drop_rate > 0 else x


class DenseBlock(nn.Module):
    """``num_layers`` dense layers, each fed the concatenation of the block input and all earlier new maps."""

    def __init__(self, num_layers: int, in_chs: int, growth_rate: int, bn_size: int, drop_rate: float) -> None:
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}", DenseLayer(in_chs + i * growth_rate, growth_rate, bn_size, drop_rate))
        self.out_chs = in_chs + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = [x]
        for layer in self.children():
            maps.append(layer(torch.cat(maps, 1)))
        return torch.cat(maps, 1)


class Transition(nn.Sequential):
    """BN ─ ReLU ─ conv 1×1 ─ average pool 2×2/2, between two dense blocks."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__(
            OrderedDict(
                norm=nn.BatchNorm2d(in_chs),
                relu=nn.ReLU(inplace=True),
                conv=nn.Conv2d(in_chs, out_chs, 1, bias=False),
                pool=nn.AvgPool2d(2, stride=2),
            )
        )


class DenseNet(Backbone):
    """DenseNet(-BC) of Table 1; see the module docstring.

    ``growth_rate`` k; ``block_config`` the layers per dense block; ``num_init_features`` the stem's maps;
    ``bn_size`` the bottleneck width in multiples of k (0: none); ``compression`` θ of the transitions;
    ``drop_rate`` dropout on each layer's new maps.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        growth_rate: int = 32,
        block_config: tuple[int, ...] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        compression: float = 0.5,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0 < compression <= 1:
            raise ValueError(f"DenseNet compression={compression!r}: θ must be in (0, 1]")
        if bn_size < 0:
            raise ValueError(f"DenseNet bn_size={bn_size!r}: a width multiple >= 1, or 0 for no bottleneck")
        self.num_classes = num_classes
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv0=nn.Conv2d(in_chans, num_init_features, 7, stride=2, padding=3, bias=False),
            norm0=nn.BatchNorm2d(num_init_features),
            relu0=nn.ReLU(inplace=True),
            pool0=nn.MaxPool2d(3, stride=2, padding=1),
        )
        chs, reduction = num_init_features, 4
        self.feature_info = []
        for i, num_layers in enumerate(block_config, start=1):
            block = DenseBlock(num_layers, chs, growth_rate, bn_size, drop_rate)
            layers[f"denseblock{i}"] = block
            chs = block.out_chs
            if i < len(block_config):
                self.feature_info.append(feature_info(chs, reduction, f"features.denseblock{i}"))
                out_chs = math.floor(compression * chs)
                layers[f"transition{i}"] = Transition(chs, out_chs)
                chs, reduction = out_chs, reduction * 2
        layers["norm5"] = nn.BatchNorm2d(chs)
        self.feature_info.append(feature_info(chs, reduction, "features.norm5"))
        self.features = nn.Sequential(layers)
        self.num_features = chs
        self.classifier = nn.Linear(chs, num_classes)
        self._stage_outputs = {info["module"].removeprefix("features.") for info in self.feature_info}
        mean, std = dataset_stats("imagenet", in_chans)
        self.default_cfg = default_cfg((in_chans, 224, 224), mean, std, num_classes, "features.conv0", "classifier")
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for name, module in self.features.named_children():
            x = module(x)
            if name in self._stage_outputs:
                maps.append(x)
        return maps

    def forward_head(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(F.relu(features[-1]), 1)
        return self.classifier(torch.flatten(x, 1))

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        weight = self.classifier.weight
        self.classifier = nn.Linear(self.num_features, num_classes).to(weight.device, weight.dtype)
        nn.init.zeros_(self.classifier.bias)
        self.default_cfg["num_classes"] = num_classes

    def remap_state_dict(self, state_dict: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
        """torchvision's and timm's names are ours, but for the "norm.1" keys of torchvision's older files."""
        return {_LEGACY_DENSE_LAYER_KEY.sub(r"\1\2.\3", key): value for key, value in state_dict.items()}


# The variants: Table 1's ImageNet models (name → architecture, description) -------------------------------------------
def _densenet(growth_rate: int, block_config: tuple[int, ...], parameters: int, num_init_features: int = 64) -> Variant:
    """DenseNet-(2·Σ block_config + 5): its growth rate, layers per block and stem width are architecture."""
    stem = f", stem {num_init_features} maps" if num_init_features != 64 else ""
    blocks = ", ".join(map(str, block_config))
    return Variant(
        {"growth_rate": growth_rate, "block_config": block_config, "num_init_features": num_init_features},
        f"DenseNet-{2 * sum(block_config) + 5} (k = {growth_rate}{stem}; blocks {blocks}): {parameters:,} parameters.",
    )


register_variants(
    DenseNet,
    {
        "densenet121": _densenet(32, (6, 12, 24, 16), 7_978_856),
        "densenet169": _densenet(32, (6, 12, 32, 32), 14_149_480),
        "densenet201": _densenet(32, (6, 12, 48, 32), 20_013_928),
        "densenet161": _densenet(48, (6, 12, 36, 24), 28_681_000, num_init_features=96),
    },
)
