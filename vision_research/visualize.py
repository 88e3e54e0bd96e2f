"""Pictures for TensorBoard and ``vr predict``: the Pascal VOC colour map (also of the mask PNGs), class maps in it,
image | truth | prediction panels, labelled boxes drawn on an image."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torchvision.utils import draw_bounding_boxes


@functools.cache
def voc_palette() -> list[int]:
    """The Pascal VOC colour map (bit-interleaved class index; 255 = ignore drawn in cream), 256 × (r, g, b)."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    palette[255 * 3 : 256 * 3] = [224, 224, 192]
    return palette


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


def draw_boxes(
    image: torch.Tensor,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    scores: torch.Tensor,
    class_names: Sequence[str],
    min_score: float = 0.0,
) -> torch.Tensor:
    """``image`` (uint8 [3, H, W]) with the xyxy ``boxes`` scoring at least ``min_score`` drawn, each labelled
    "<class name> <score>"."""
    keep = scores >= min_score
    if not keep.any():
        return image.cpu()
    text = [f"{class_names[int(c)]} {float(s):.2f}" for c, s in zip(labels[keep], scores[keep], strict=True)]
    return draw_bounding_boxes(image.cpu(), boxes[keep].cpu(), labels=text, width=2)
