"""Segmentation class maps as palette PNGs (VOC's ``SegmentationClass/<id>.png``: class indices, 255 = ignore)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import DataError
from ...visualize import voc_palette


def save_mask_png(mask: np.ndarray, path: str | Path) -> None:
    """A class-index mask as a palette PNG (values are the class indices; viewers show VOC colours)."""
    if mask.ndim != 2 or mask.min(initial=0) < 0 or mask.max(initial=0) > 255:
        raise DataError(f"{path}: a mask must be a 2-D array of class indices 0..255")
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(list(voc_palette()))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def load_mask(path: str | Path, num_classes: int, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """A class-index mask [H, W] uint8; values other than 0..num_classes-1 and 255 (ignore) are a ``DataError``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: mask file not found")
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L", "I", "I;16"):
                raise DataError(f"{path}: a mask must be a palette or grayscale PNG of class indices; got {image.mode}")
            mask = np.asarray(image)
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: cannot read the mask ({err})") from None
    if expected_size is not None and (mask.shape[1], mask.shape[0]) != tuple(expected_size):
        w, h = expected_size
        raise DataError(f"{path}: the mask is {mask.shape[1]}×{mask.shape[0]} but its image is {w}×{h}")
    values = np.unique(mask)
    bad = values[((values < 0) | (values >= num_classes)) & (values != 255)]
    if bad.size:
        raise DataError(
            f"{path}: class indices {bad.tolist()[:10]} are outside 0..{num_classes - 1} ({num_classes} classes; "
            "255 = ignore); set data.num_classes or data.class_names to cover them"
        )
    return mask.astype(np.uint8)
