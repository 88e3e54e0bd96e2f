"""Reading images as RGB uint8 arrays, with errors that name the file and what is wrong with it.

Grayscale, palette, RGBA, CMYK and 16-bit images are converted to 8-bit RGB (16-bit values are scaled
by 255/65535, alpha is dropped); a missing, unreadable or truncated file is a ``DataError``; so is an image
whose size differs from the one its annotation states (the boxes would then be in another frame).

Images are read upright, turned by their EXIF orientation (``ImageOps.exif_transpose``) as viewers and labelling
tools show them: pixels, sizes and boxes are all in this displayed frame.

``scan_images`` reads the header of every file of a data set (no pixels decoded) and reports all the missing,
empty, unreadable and oversized files in one ``DataError``: the datamodules call it at set-up, so that bad data
stops a run before training rather than in a loader worker mid-epoch. A file cut short keeps a whole header and
passes; decoding it fails in ``load_rgb``, which names it (PIL's ``ImageFile.LOAD_TRUNCATED_IMAGES`` stays off:
a truncated image is never silently padded with grey).

Decompression bombs: ``max_pixels`` (the datamodules' ``max_image_pixels``; default PIL's 89,478,485, None: no
limit) is compared with width × height from the header before any pixel is decoded. It replaces PIL's global
``Image.MAX_IMAGE_PIXELS``, which is switched off only while this module has a file open and restored after,
so that one datamodule's limit never leaks into another's (a process-wide switch: loader workers are processes,
not threads).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ConfigError, DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
EXIF_ORIENTATION = 274  # the EXIF tag; values 5-8 turn the stored pixels a quarter to display them
QUARTER_TURNS = (5, 6, 7, 8)
DEFAULT_MAX_PIXELS = 89_478_485  # PIL's default Image.MAX_IMAGE_PIXELS (1024**3 / 4 / 3: a 256 MB RGB image)
SCAN_NAMED = 5  # bad files a scan's error names
SCAN_PROGRESS_ABOVE = 2000  # scans of more files than this show a progress bar
SCAN_SKIP_HINT = ", or set data.scan_images=false to skip this check"


class _Unreadable(Exception):
    """What is wrong with an image file, in a few words; the caller names the file."""


def check_max_pixels(value: int | None) -> int | None:
    """``value`` as a pixel limit (None: no limit); anything but a positive whole number is a ``ConfigError``."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return value
    raise ConfigError(f"data.max_image_pixels must be a positive number of pixels or null (no limit); got {value!r}")


def _check_pixels(size: tuple[int, int], max_pixels: int | None) -> None:
    width, height = size
    if max_pixels is not None and width * height > max_pixels:
        raise _Unreadable(
            f"{width}×{height} = {width * height:,} pixels, above data.max_image_pixels={max_pixels:,} "
            "(a guard against decompression bombs: raise it, or null for no limit, for files you trust)"
        )


@contextmanager
def _open(path: Path, max_pixels: int | None) -> Iterator[Image.Image]:
    """``path`` opened by PIL (header read, pixels not yet decoded) with its pixel count checked against ``max_pixels``.

    Every problem, also one raised while decoding inside the block, is an ``_Unreadable``. PIL's own pixel limit is
    off for the block (``max_pixels`` takes its place) and restored after it.
    """
    if not path.is_file():
        raise _Unreadable("image file not found")
    if path.stat().st_size == 0:
        raise _Unreadable("empty file (0 bytes)")
    pil_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(path) as image:
            _check_pixels(image.size, max_pixels)
            yield image
    except UnidentifiedImageError:
        raise _Unreadable("cannot read the image (no image format recognised): corrupt or not an image") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise _Unreadable(f"cannot read the image ({err}): truncated, corrupt or not an image") from None
    finally:
        Image.MAX_IMAGE_PIXELS = pil_limit


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


def load_rgb(
    path: str | Path,
    expected_size: tuple[int, int] | None = None,
    referenced_by: str = "",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """The image at ``path`` as an [H, W, 3] uint8 array, upright by its EXIF orientation.

    ``expected_size`` is (width, height) from the annotation; a mismatch raises ``DataError``.
    ``referenced_by`` names the annotation that points to the file, for the error messages. An image of more than
    ``max_pixels`` pixels (None: no limit) is a ``DataError`` before its pixels are decoded.
    """
    path = Path(path)
    by = f" (referenced by {referenced_by})" if referenced_by else ""
    try:
        with _open(path, max_pixels) as image:
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
            array = _to_rgb(image)
    except _Unreadable as problem:
        raise DataError(f"{path}: {problem}{by}") from None
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
    try:
        with _open(path, max_pixels=None) as image:
            width, height = image.size
            turned = image.getexif().get(EXIF_ORIENTATION, 1) in QUARTER_TURNS
    except _Unreadable as problem:
        raise DataError(f"{path}: {problem}{by}") from None
    return (height, width) if turned else (width, height)


def _header_problem(path: Path, max_pixels: int | None) -> str | None:
    """What is wrong with the image file at ``path`` as far as its header tells (None: nothing), in a few words."""
    try:
        with _open(path, max_pixels):
            return None
    except _Unreadable as problem:
        return str(problem)


def scan_images(paths: Sequence[Path], max_pixels: int | None = DEFAULT_MAX_PIXELS, hint: str = SCAN_SKIP_HINT) -> None:
    """Read the header of every file in ``paths`` (no pixels decoded); bad files make one ``DataError``.

    The error names the first ``SCAN_NAMED`` missing, empty, unreadable or oversized (``max_pixels``) files with
    what is wrong with each, relative to their common folder, and counts them all; ``hint`` ends it. A file cut
    short passes: its header is whole. More than ``SCAN_PROGRESS_ABOVE`` files show a progress bar.
    """
    from rich.progress import track

    shown = track(paths, f"checking {len(paths)} images", transient=True, disable=len(paths) <= SCAN_PROGRESS_ABOVE)
    bad = [(path, problem) for path in shown if (problem := _header_problem(path, max_pixels))]
    if not bad:
        return
    folder = Path(os.path.commonpath([path.parent for path in paths]))
    named = "; ".join(f"{path.relative_to(folder)}: {problem}" for path, problem in bad[:SCAN_NAMED])
    more = f"; and {len(bad) - SCAN_NAMED} more" if len(bad) > SCAN_NAMED else ""
    raise DataError(
        f"{len(bad)} of {len(paths)} images in {folder} cannot be read: {named}{more} — fix or remove them{hint}"
    )
