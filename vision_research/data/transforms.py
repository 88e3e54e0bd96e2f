"""albumentations pipelines for detection / segmentation (bbox- and mask-aware) and for classification.

Conventions: images are [H, W, 3] uint8 RGB numpy arrays and stay uint8 (normalisation happens later, on the
device); boxes are xyxy in continuous pixel coordinates (albumentations' "pascal_voc"), with their labels in
one or more label fields (default ``labels``); segmentation masks are [H, W] integer class maps passed as
``mask=`` and always resampled with nearest interpolation, so they keep their values. Call a detection
pipeline as ``transform(image=..., bboxes=..., labels=..., [mask=...])`` (``bboxes`` may be empty). Pass
label fields as numpy arrays on every call: albumentations restores the type a field had in the first
call (after a list of ints, every later field comes back as a list of floats); an empty field comes back as
``[]``.

Padding: new image pixels are grey 114 (the YOLO letterbox value; close to the ImageNet mean, so about 0
after normalisation), new mask pixels are 255 (ignore).

Letterbox (evaluation, and the last step of every training preset): the image is centre-padded to a square
whose side is its longer side (an odd remainder puts the extra pixel at the bottom / right), then resized to
``image_size``×``image_size``. Padding before resizing makes the scale the same on both axes, so
``geometry.letterbox_geometry`` describes the mapping exactly: ``x_out = x * scale + pad_x``,
``y_out = y * scale + pad_y``.

Box rule: input boxes are clipped to the image, and dropped if that leaves them empty (wholly outside, or
with no width or height). After every geometric transform each box is clipped to the new image, then
dropped if less than ``min_visibility`` of its area (just before that clipping) remains visible, or if its
clipped area is below ``min_area`` px² (in the pixels of that step). A dropped box disappears together with
its entries in every label field. Flips, padding and resizing never cut a box; in the presets only the
affine step and the random crop can, so a box cut by both must pass each check.

Degenerate images: every preset takes any image of at least 1×1 pixel (a side of 1 px included) and gives an
``image_size`` square; the random crop keeps the whole image where its crop would round down to no pixel.

Rotation: a rotated box is the box of the rotated ellipse inscribed in it (``rotate_method="ellipse"``):
exact for round objects, too small for rectangles (at 3°, the standard preset's limit, a square's box has
IoU 1 / (1 + sin 6°) = 0.905 with the true one; "largest_box" is exact for rectangles, as loose for discs).

Randomness: pass ``seed`` for a reproducible pipeline; ``seed_transform`` re-seeds one, e.g. in each
DataLoader worker (forked workers otherwise share the generator state and repeat each other's draws).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np

from ..errors import ConfigError, close_matches, unknown_name_error

PAD_VALUE = 114
IGNORE_INDEX = 255

_NO_AUGMENTATION: dict[str, Any] = {
    "hflip": 0.0,  # probability of a horizontal flip
    "crop": 0.0,  # probability of a random crop that contains every box (NonEmptyBBoxSafeRandomCrop)
    "crop_erosion": 0.0,  # how far (fraction) the crop may cut into the union of the boxes; 0: never
    "affine": 0.0,  # probability of the scale / shift / rotate step
    "scale": (1.0, 1.0),  # zoom range of the affine step (same factor on both axes)
    "translate": 0.0,  # maximal shift of the affine step, as a fraction of the image side
    "rotate": 0.0,  # maximal rotation of the affine step, in degrees
    "rotate_method": "ellipse",  # box of a rotated box: "ellipse" (tight for round objects) or "largest_box"
    "color": 0.0,  # probability of colour jitter
    "brightness": 0.0,  # jitter factors are drawn from [1 - v, 1 + v]; hue from [-v, v] (fraction of a turn)
    "contrast": 0.0,
    "saturation": 0.0,
    "hue": 0.0,
}
_STANDARD = {
    **_NO_AUGMENTATION,
    "hflip": 0.5,
    "crop": 0.5,
    "affine": 0.7,
    "scale": (0.75, 1.25),
    "translate": 0.1,
    "rotate": 3.0,
    "color": 0.5,
    "brightness": 0.2,
    "contrast": 0.2,
    "saturation": 0.2,
    "hue": 0.02,
}
DETECTION_PRESETS: dict[str, dict[str, Any]] = {
    "none": _NO_AUGMENTATION,
    "flip": {**_NO_AUGMENTATION, "hflip": 0.5},
    "standard": _STANDARD,
    "strong": {
        **_STANDARD,
        "crop": 0.7,
        "crop_erosion": 0.2,
        "affine": 0.9,
        "scale": (0.5, 1.5),
        "translate": 0.2,
        "rotate": 6.0,
        "color": 0.8,
        "brightness": 0.4,
        "contrast": 0.4,
        "saturation": 0.5,
        "hue": 0.04,
    },
}
CLASSIFICATION_PRESETS = ("none", "standard", "strong")


class NonEmptyBBoxSafeRandomCrop(A.BBoxSafeRandomCrop):
    """``BBoxSafeRandomCrop`` that keeps the whole image where albumentations 2.0 would draw an empty crop.

    Its crop sides are rounded down, so an image 1 px high or wide (or a box thinner than a pixel) can give a crop
    of 0 px, which albumentations then refuses with a ValueError; such a draw crops nothing instead.
    """

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        crop = super().get_params_dependent_on_data(params, data)
        x_min, y_min, x_max, y_max = crop["crop_coords"]
        if x_max > x_min and y_max > y_min:
            return crop
        height, width = params["shape"][:2]
        return {"crop_coords": (0, 0, width, height)}


class PadToSquare(A.Pad):
    """Centre-pad to a square whose side is the longer image side (the first half of the letterbox)."""

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        side = max(height, width)
        top, left = (side - height) // 2, (side - width) // 2
        return {"pad_top": top, "pad_bottom": side - height - top, "pad_left": left, "pad_right": side - width - left}


def letterbox(image_size: int) -> list[A.BasicTransform]:
    """Centre-pad to a square (image 114, mask 255), then resize to ``image_size``×``image_size``."""
    return [
        PadToSquare(padding=0, fill=PAD_VALUE, fill_mask=IGNORE_INDEX),
        A.Resize(
            image_size,
            image_size,
            interpolation=cv2.INTER_LINEAR,
            mask_interpolation=cv2.INTER_NEAREST_EXACT,  # pixel-centred, unlike INTER_NEAREST: no half-pixel shift
            area_for_downscale="image",
        ),
    ]


def seed_transform(transform: A.Compose, seed: int | None) -> A.Compose:
    """Give every step of ``transform`` one shared generator seeded with ``seed`` (None: fresh entropy).

    albumentations 2.0's ``Compose(seed=...)`` seeds each step's own generator with the same number, so the
    steps replay one stream (two flips with p=0.5 always fire together); a shared generator keeps them apart.
    """
    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
    return transform


def _resolve_preset(preset: str | Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of ``preset`` (a name, or a dict: its "name", default "none", plus overrides)."""
    if isinstance(preset, Mapping):
        overrides = {**preset, **overrides}
        name = overrides.pop("name", "none")
    else:
        name = preset
    if name not in DETECTION_PRESETS:
        raise unknown_name_error("augmentation preset", str(name), DETECTION_PRESETS)
    params = dict(DETECTION_PRESETS[name])
    for key, value in overrides.items():
        if key not in params:
            matches = close_matches(key, params)
            hint = f" (did you mean {', '.join(matches)}?)" if matches else ""
            raise ConfigError(f"unknown augmentation option '{key}'{hint}. Options: {', '.join(params)}")
        params[key] = tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else value
    return params


def _augmentations(params: Mapping[str, Any]) -> list[A.BasicTransform]:
    """The random steps of a detection preset (before the letterbox); steps with probability 0 are left out."""
    steps: list[A.BasicTransform] = []
    if params["hflip"] > 0:
        steps.append(A.HorizontalFlip(p=params["hflip"]))
    if params["crop"] > 0:
        steps.append(NonEmptyBBoxSafeRandomCrop(erosion_rate=params["crop_erosion"], p=params["crop"]))
    if params["affine"] > 0:
        shift, angle = params["translate"], params["rotate"]
        steps.append(
            A.Affine(
                scale=params["scale"],
                keep_ratio=True,
                translate_percent=(-shift, shift),
                rotate=(-angle, angle),
                rotate_method=params["rotate_method"],
                border_mode=cv2.BORDER_CONSTANT,
                fill=PAD_VALUE,
                fill_mask=IGNORE_INDEX,
                p=params["affine"],
            )
        )
    if params["color"] > 0:
        jitter = {k: params[k] for k in ("brightness", "contrast", "saturation", "hue")}
        steps.append(A.ColorJitter(**jitter, p=params["color"]))
    return steps


def build_transforms(
    preset: str | Mapping[str, Any],
    image_size: int,
    train: bool,
    min_visibility: float = 0.3,
    min_area: float = 4.0,
    label_fields: Sequence[str] = ("labels",),
    seed: int | None = None,
    **overrides: Any,
) -> A.Compose:
    """Detection / segmentation pipeline: the preset's random steps (``train`` only), then the letterbox.

    ``overrides`` replace entries of the preset (see ``DETECTION_PRESETS``); the box rule is in the module
    docstring. Evaluation (``train=False``) is the deterministic letterbox whatever the preset.
    ``label_fields`` name the per-box fields dropped together with their boxes; ``seed`` fixes the draws.
    """
    params = _resolve_preset(preset, overrides)
    if image_size < 1:
        raise ConfigError(f"image_size must be >= 1; got {image_size}")
    if not 0.0 <= min_visibility <= 1.0 or min_area < 0:
        raise ConfigError(f"min_visibility must be in [0, 1] and min_area >= 0; got {min_visibility}, {min_area}")
    try:  # built for evaluation too, so that a bad value fails in any run
        augmentations = _augmentations(params)
    except ValueError as err:  # albumentations validates its arguments with pydantic
        raise ConfigError(f"bad augmentation parameters {params}: {err}") from err
    bbox_params = A.BboxParams(
        format="pascal_voc",
        label_fields=list(label_fields),
        min_visibility=min_visibility,
        min_area=min_area,
        clip=True,
        filter_invalid_bboxes=True,  # wholly outside or empty after clipping: dropped, not an error
    )
    steps = [*augmentations, *letterbox(image_size)] if train else letterbox(image_size)
    return seed_transform(A.Compose(steps, bbox_params=bbox_params), seed)


def build_classification_transforms(
    image_size: int, train: bool, preset: str = "standard", crop_ratio: float = 0.875, seed: int | None = None
) -> A.Compose:
    """Classification pipeline on uint8 RGB images, giving ``image_size``×``image_size`` uint8 images.

    Training: "standard" = RandomResizedCrop(scale 0.08–1) + horizontal flip; "strong" adds mild colour
    jitter; "none" = the evaluation pipeline. Evaluation: resize the shorter side to
    ``floor(image_size / crop_ratio)``, then take the centre ``image_size`` crop (the torchvision / timm recipe).
    """
    if not isinstance(preset, str):
        raise ConfigError(
            f"augment must be a classification preset's name: {', '.join(CLASSIFICATION_PRESETS)}; got {preset!r} "
            "(these presets take no options)"
        )
    if preset not in CLASSIFICATION_PRESETS:
        raise unknown_name_error("classification augmentation preset", preset, CLASSIFICATION_PRESETS)
    if not 0.0 < crop_ratio <= 1.0:
        raise ConfigError(f"crop_ratio must be in (0, 1]; got {crop_ratio}")
    if image_size < 1:
        raise ConfigError(f"image_size must be >= 1; got {image_size}")
    if train and preset != "none":
        steps = [
            A.RandomResizedCrop(size=(image_size, image_size), scale=(0.08, 1.0), area_for_downscale="image"),
            A.HorizontalFlip(p=0.5),
        ]
        if preset == "strong":
            steps.append(A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.8))
    else:
        resize = math.floor(image_size / crop_ratio)
        steps = [A.SmallestMaxSize(max_size=resize, area_for_downscale="image"), A.CenterCrop(image_size, image_size)]
    return seed_transform(A.Compose(steps), seed)
