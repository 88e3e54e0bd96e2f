"""Pictures for TensorBoard and ``vr predict``: class maps in the VOC palette, image | truth | prediction panels."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..data.formats import voc_palette


def colorize(class_map: torch.Tensor) -> torch.Tensor:
    """A class map [H, W] (255 = ignore) as a uint8 RGB image [3, H, W] in the Pascal VOC colours."""
    palette = torch.tensor(voc_palette(), dtype=torch.uint8, device=class_map.device).view(256, 3)
    return palette[class_map.long().clamp(0, 255)].permute(2, 0, 1)


def denormalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Normalised float images [N, 3, H, W] back to uint8."""
    mean_t = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    return (images.float() * std_t + mean_t).clamp(0, 1).mul(255).round().to(torch.uint8)


def segmentation_panels(images: torch.Tensor, targets: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
    """One uint8 grid [3, N·H, 3·W]: a row per image holding image | ground truth | prediction."""
    rows = [
        torch.cat([image, colorize(target), colorize(prediction)], dim=2)
        for image, target, prediction in zip(images, targets, predictions, strict=True)
    ]
    return torch.cat(rows, dim=1)
