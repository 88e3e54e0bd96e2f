"""The letterbox's geometry, shared by the data pipelines, the tasks and ``vr predict``.

The letterbox (``data.transforms.letterbox``) centre-pads an image to a square whose side is its longer side (an odd
remainder puts the extra pixel at the bottom / right), then resizes it to ``image_size``×``image_size``; so
``x_out = x * scale + pad_x`` and ``y_out = y * scale + pad_y`` exactly.
"""

from __future__ import annotations

import numpy as np
import torch


def letterbox_geometry(height: int, width: int, image_size: int) -> tuple[float, float, float]:
    """(scale, pad_x, pad_y) of the letterbox of a ``height``×``width`` image: ``x_out = x * scale + pad_x``."""
    side = max(height, width)
    scale = image_size / side
    return scale, (side - width) // 2 * scale, (side - height) // 2 * scale


def boxes_to_original(
    boxes: torch.Tensor | np.ndarray, height: int, width: int, image_size: int
) -> torch.Tensor | np.ndarray:
    """Map xyxy boxes of the letterboxed image back to the ``height``×``width`` original, clipped to it."""
    scale, pad_x, pad_y = letterbox_geometry(height, width, image_size)
    offset, limit = (pad_x, pad_y, pad_x, pad_y), (width, height, width, height)
    if isinstance(boxes, torch.Tensor):
        boxes = boxes if boxes.is_floating_point() else boxes.float()
        original = (boxes - boxes.new_tensor(offset)) / scale
        return torch.minimum(original.clamp(min=0), boxes.new_tensor(limit))
    boxes = np.asarray(boxes)
    boxes = boxes if np.issubdtype(boxes.dtype, np.floating) else boxes.astype(np.float64)
    return np.clip((boxes - np.asarray(offset)) / scale, 0, limit).astype(boxes.dtype)
