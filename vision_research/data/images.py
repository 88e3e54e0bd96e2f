"""Reading images as RGB uint8 arrays, with errors that name the file and what is wrong with it.

Grayscale, palette, RGBA, CMYK and 16-bit images are converted to 8-bit RGB (16-bit values are scaled
by 255/65535, alpha is dropped); a missing, unreadable or truncated file is a ``DataError``; so is an image
whose size differs from the one its annotation states (the boxes would then be in another frame).

Images are read upright, turned by their EXIF orientation (``ImageOps.exif_transpose``) as viewers and labelling
tools show them: pixels, sizes and boxes are all in this displayed frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
EXIF_ORIENTATION = 274  # the EXIF tag; values 5-8 turn the stored pixels a quarter to display them
QUARTER_TURNS = (5, 6, 7, 8)


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image, dtype=np.float64)
        values = np.clip(values, 0, 65535) * (255.0 / 65535.0)
        gray = np.rint(values).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        gray = np.rint((values - low) * (255.0 / (high - low or 1.0))).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image)


def load_rgb(path: str | Path, expected_size: tuple[int, int] | None = None, referenced_by: str = "") -> np.ndarray:
    """The image at ``path`` as an [H, W, 3] uint8 array, upright by its EXIF orientation.

    ``expected_size`` is (width, height) from the annotation; a mismatch raises ``DataError``.
    ``referenced_by`` names the annotation that points to the file, for the error messages.
    """
    path = Path(path)
    by = f" (referenced by {referenced_by})" if referenced_by else ""
    if not path.is_file():
        raise DataError(f"{path}: image file not found{by}")
    try:
        with Image.open(path) as image:
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
            array = _to_rgb(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: cannot read the image ({err}); the file is corrupt or not an image{by}") from None
    height, width = array.shape[:2]
    if expected_size is not None and tuple(expected_size) != (width, height):
        w, h = expected_size
        hint = (
            " (a quarter turn: images are read upright by their EXIF orientation)" if (h, w) == (width, height) else ""
        )
        raise DataError(
            f"{path}: the annotation{by} gives the size {w}×{h} but the image is {width}×{height}{hint}; "
            "its boxes would be in the wrong frame"
        )
    return np.ascontiguousarray(array)


def image_size(path: str | Path, referenced_by: str = "") -> tuple[int, int]:
    """(width, height) upright by the EXIF orientation, from the file header (JPEG: without decoding the pixels)."""
    path = Path(path)
    by = f" (referenced by {referenced_by})" if referenced_by else ""
    if not path.is_file():
        raise DataError(f"{path}: image file not found{by}")
    try:
        with Image.open(path) as image:
            width, height = image.size
            turned = image.getexif().get(EXIF_ORIENTATION, 1) in QUARTER_TURNS
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: cannot read the image ({err}); the file is corrupt or not an image{by}") from None
    return (height, width) if turned else (width, height)
