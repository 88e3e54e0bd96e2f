"""The simple Fashion-MNIST CNN of A. Géron, *Hands-On Machine Learning*, ch. 14.

    In 1×28×28 ─ conv 64@7×7 ─ pool ─ 2× conv 128@3×3 ─ pool ─ 2× conv 256@3×3 ─ pool
               ─ flatten ─ fc 128 ─ dropout 0.5 ─ fc 64 ─ dropout 0.5 ─ fc 10

All convolutions stride 1, SAME padding, ReLU; 2×2 max-pools; the number of maps doubles after each pool.
The book reports > 92 % test accuracy on Fashion-MNIST.

Parameters (hand count, asserted in the tests): conv 3,200 + 73,856 + 147,584 + 295,168 + 590,080;
fc 2,304·128 + 128 = 295,040; 128·64 + 64 = 8,256; 64·10 + 10 = 650 → **1,413,834** at 28×28
(the flatten size follows ``image_size``: 256·⌊⌊⌊s/2⌋/2⌋/2⌋²).

Stages: after each pool — 64 maps at stride 2, 128 at stride 4, 256 at stride 8.
Differences from the book: none in the layers; Keras flattens channels-last, torch channels-first, which
only permutes the first dense layer's rows.
"""

from __future__ import annotations

import torch
from torch import nn

from ..constants import dataset_stats
from .base import Backbone, default_cfg, feature_info
from .registry import Variant, register_variants


def _conv_relu(in_chs: int, out_chs: int, kernel_size: int) -> list[nn.Module]:
    return [nn.Conv2d(in_chs, out_chs, kernel_size, padding="same"), nn.ReLU(inplace=True)]


class FashionMNISTCNN(Backbone):
    """Géron's Fashion-MNIST CNN; see the module docstring."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, image_size: int = 28, drop_rate: float = 0.5) -> None:
        super().__init__()
        if image_size < 8:
            raise ValueError(f"fashion_mnist_cnn needs image_size >= 8 (three 2×2 pools); got {image_size}")
        self.num_classes, self.drop_rate = num_classes, drop_rate
        self.stage1 = nn.Sequential(*_conv_relu(in_chans, 64, 7), nn.MaxPool2d(2))
        self.stage2 = nn.Sequential(*_conv_relu(64, 128, 3), *_conv_relu(128, 128, 3), nn.MaxPool2d(2))
        self.stage3 = nn.Sequential(*_conv_relu(128, 256, 3), *_conv_relu(256, 256, 3), nn.MaxPool2d(2))
        side = image_size // 2 // 2 // 2
        self.flat_features = 256 * side * side
        self.hidden = nn.Sequential(
            nn.Flatten(),
            nn.Linear(self.flat_features, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
            nn.Linear(128, 64),
            nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
        )
        self.fc = nn.Linear(64, num_classes)
        self.feature_info = [
            feature_info(64, 2, "stage1"),
            feature_info(128, 4, "stage2"),
            feature_info(256, 8, "stage3"),
        ]
        self.default_cfg = default_cfg(
            (in_chans, image_size, image_size),
            *dataset_stats("fashion_mnist", in_chans),
            num_classes,
            "stage1.0",
            "fc",
        )

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        s1 = self.stage1(x)
        s2 = self.stage2(s1)
        return [s1, s2, self.stage3(s2)]

    def forward_head(self, features: list[torch.Tensor]) -> torch.Tensor:
        last = features[-1]
        if last[0].numel() != self.flat_features:
            size = self.default_cfg["input_size"][1]
            raise ValueError(
                f"fashion_mnist_cnn was built for {size}×{size} inputs (flatten of {self.flat_features}); "
                f"got last-stage maps {tuple(last.shape[1:])}. Build it with image_size=<your size>."
            )
        return self.fc(self.hidden(last))

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(64, num_classes).to(self.fc.weight.device)
        self.default_cfg["num_classes"] = num_classes


register_variants(
    FashionMNISTCNN,
    {"fashion_mnist_cnn": Variant({}, "Géron's simple Fashion-MNIST CNN (1,413,834 parameters at 28×28).")},
)
