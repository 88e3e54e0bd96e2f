"""What a task may read from its data: the task–data contract.

A task learns what the data knows once, at construction: ``build.build_task`` passes each option of
``TaskData`` that the task's constructor names, and then the task's ``options_from_data`` (detection: the
COCO category ids and the k-means anchors of the training boxes, through ``AnnotatedData``). The values are
saved in the checkpoint's hparams, so that evaluation, ``vr predict`` and ``vr eval`` need no datamodule:
during evaluation a task reads its batches only, and a bare DataLoader of the right batches evaluates it.

Batches are ``(images, targets)``, images float and normalised on their device:

- classification: labels Int64 [N];
- localization and detection: a list of dicts per image, torchvision's ``boxes`` xyxy input pixels and
  ``labels``, with ``image_id``, ``orig_size`` (H, W) and ``ground_truth`` (the image's objects as COCO
  scores them, ``vision_research.coco``) for detection;
- segmentation: class maps Int64 [N, H, W], 255 = ignore.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class TaskData(Protocol):
    """The facts of a datamodule a task may be built with (each passed when the task's constructor names it)."""

    num_classes: int
    in_chans: int
    class_names: Sequence[str]
    mean: Sequence[float]  # per input channel, of [0, 1] pixels (constants.channel_stats)
    std: Sequence[float]
    image_size: int | tuple[int, int]  # the network input: a square's side, or (H, W)


class AnnotatedData(TaskData, Protocol):
    """Data read from annotation files (detection, localization, segmentation): its ``AnnotationSet`` per split."""

    def annotations(self, split: str) -> Any:
        """The ``data.annotations.AnnotationSet`` of ``split`` ("train", "val" or "test")."""


DATA_OPTIONS = tuple(TaskData.__annotations__)


def options_from(datamodule: TaskData, accepted: Sequence[str]) -> dict[str, Any]:
    """The ``DATA_OPTIONS`` among ``accepted`` that ``datamodule`` has (as plain lists / values)."""
    options = {}
    for key in DATA_OPTIONS:
        value = getattr(datamodule, key, None) if key in accepted else None
        if isinstance(value, tuple | list):
            value = list(value) or None  # no class names: none passed
        if value is not None:
            options[key] = value
    return options
