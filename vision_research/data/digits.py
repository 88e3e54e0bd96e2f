"""scikit-learn's 1,797 8×8 digits (values 0..16), resized to ``image_size`` (32×32 by default, the input LeNet-5
expects) and split stratified; nothing is downloaded: the data ship inside scikit-learn."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .in_memory import DIGIT_CLASSES, InMemoryClassificationDataModule, Split, stratified_split
from .registry import register_datamodule


@register_datamodule(name="digits")
class DigitsDataModule(InMemoryClassificationDataModule):
    """scikit-learn's 1,797 8×8 digits (values 0..16), resized to ``image_size`` and split stratified."""

    all_class_names = DIGIT_CLASSES

    def __init__(self, val_fraction: float = 0.15, **options: Any) -> None:
        super().__init__(val_fraction=val_fraction, **options)  # mean / std: the training split's (load_splits)

    def load_splits(self) -> dict[str, Split]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.from_numpy(digits.images).float().unsqueeze(1) / 16.0
        if self.image_size_px != 8:
            images = torch.nn.functional.interpolate(
                images, size=self.image_size_px, mode="bilinear", align_corners=False
            )
        images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
        labels = digits.target.astype(np.int64)
        parts = stratified_split(labels, (self.val_fraction, self.test_fraction), self.split_seed)
        train = images[parts[0]].float() / 255
        self.set_channel_stats((train.mean().item(),), (train.std().item(),))
        return {
            name: Split(images[idx], torch.from_numpy(labels[idx]))
            for name, idx in zip(("train", "val", "test"), parts, strict=True)
        }
