"""Datasets and the datamodule base shared by COCO, VOC, YOLO and shapes data (detection or segmentation).

A sample is read from its ``AnnotationSet`` (any format), augmented with albumentations (``transforms``)
and returned as a uint8 CHW tensor with:

- detection: a target dict following torchvision — ``boxes`` FloatTensor[N, 4] xyxy pixels of the
  network input, ``labels`` Int64Tensor[N] contiguous 0..C-1, plus ``difficult`` / ``iscrowd``
  BoolTensor[N] flags, ``image_id`` (the id in the annotation file) and ``orig_size`` (H, W) so that
  predictions map back to the original image (``geometry.boxes_to_original``), and ``ground_truth``, the image's
  objects as the COCO ground truth holds them (float64 [M, 7] rows, ``vision_research.coco``: every object of
  the annotation file, in its original pixels, whatever the augmentation kept), so that a detector is scored from
  its batches alone;
- segmentation: a class map [H, W] (0 = background, 1..C the classes, 255 = ignore).

Batches travel as uint8 (images and class maps) and become float normalised images and Int64 class maps
on their device (``base.VisionDataModule``).

At set-up (``setup(stage)``) the images of the stage's splits are checked (``base.ImageFilesDataModule``). A file
cut short passes that check and is a ``DataError`` naming it when a sample reads it; so is a class map with a value
that is neither a class index nor 255.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..coco import ground_truth_rows
from ..errors import ConfigError, DataError
from .annotations import AnnotationSet, ImageRecord
from .base import ImageFilesDataModule
from .images import DEFAULT_MAX_PIXELS, load_rgb
from .loader import SPLITS
from .transforms import build_transforms

TASKS = ("detection", "segmentation")
MaskReader = Callable[[ImageRecord], np.ndarray]


class AnnotatedImageDataset(Dataset):
    """The images of an ``AnnotationSet`` with detection targets, or with class maps when ``read_mask`` is given.

    An image of more than ``max_pixels`` pixels (None: no limit) is a ``DataError``, as is one that cannot be decoded.
    """

    def __init__(
        self,
        annotations: AnnotationSet,
        transform: Callable,
        read_mask: MaskReader | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.annotations, self.transform, self.read_mask = annotations, transform, read_mask
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.annotations.images)

    def load(self, index: int) -> tuple[np.ndarray, ImageRecord]:
        record = self.annotations.images[index]
        path = self.annotations.image_path(record)
        size = (record.width, record.height)
        return load_rgb(path, size, referenced_by=record.source, max_pixels=self.max_pixels), record

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        image, record = self.load(index)
        if self.read_mask is not None:
            out = self.transform(image=image, mask=self.read_mask(record), bboxes=np.zeros((0, 4)), labels=np.zeros(0))
            return _chw(out["image"]), torch.from_numpy(np.asarray(out["mask"], dtype=np.uint8))
        boxes = np.array([obj.box for obj in record.objects], dtype=np.float32).reshape(-1, 4)
        # The object indices travel as the label field, so every per-object attribute survives dropping.
        out = self.transform(image=image, bboxes=boxes, labels=np.arange(len(boxes)))
        kept = np.asarray(out["labels"], dtype=np.int64)
        objects = [record.objects[k] for k in kept]
        target = {
            "boxes": torch.as_tensor(np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)),
            "labels": torch.tensor([self.annotations.label(o.category) for o in objects], dtype=torch.int64),
            "difficult": torch.tensor([o.difficult for o in objects], dtype=torch.bool),
            "iscrowd": torch.tensor([o.iscrowd for o in objects], dtype=torch.bool),
            "image_id": record.image_id,
            "orig_size": torch.tensor([record.height, record.width]),
            "ground_truth": ground_truth_rows(
                [o.box for o in record.objects],
                [o.area for o in record.objects],
                [o.iscrowd for o in record.objects],
                [self.annotations.label(o.category) for o in record.objects],
            ),
        }
        return _chw(out["image"]), target


def _chw(image: np.ndarray) -> torch.Tensor:
    """A CHW view of an HWC array (no copy: ``torch.stack`` in the collate makes the one contiguous copy)."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


def collate_detection(batch: Sequence[tuple[torch.Tensor, dict]]) -> tuple[torch.Tensor, list[dict]]:
    """Stack the (same-size, letterboxed) images; targets stay a list, one dict per image.

    Each per-image tensor becomes a view of one batch-wide tensor per key, so that a loader worker hands
    over a handful of shared-memory blocks per batch instead of several per image.
    """
    images, targets = zip(*batch, strict=True)
    merged = [dict(t) for t in targets]
    for key in ("boxes", "labels", "difficult", "iscrowd", "ground_truth"):
        counts = [len(t[key]) for t in targets]
        for target, part in zip(merged, torch.cat([t[key] for t in targets]).split(counts), strict=True):
            target[key] = part
    for target, size in zip(merged, torch.stack([t["orig_size"] for t in targets]), strict=True):
        target["orig_size"] = size
    return torch.stack(images), merged


def random_split_records(annotations: AnnotationSet, fraction: float, seed: int) -> tuple[AnnotationSet, AnnotationSet]:
    """(rest, part) where ``part`` holds ``fraction`` of the images, chosen at random with ``seed``."""
    count = len(annotations.images)
    size = round(fraction * count)
    if not 0 < size < count:
        raise ConfigError(f"a fraction of {fraction} of {count} images leaves an empty split; change it or add data")
    order = np.random.default_rng(seed).permutation(count)
    part, rest = set(order[:size].tolist()), order[size:]

    def subset(indices: Any) -> AnnotationSet:
        return AnnotationSet(
            [annotations.images[i] for i in sorted(indices)],
            annotations.categories,
            image_dir=annotations.image_dir,
            category_ids=annotations.category_ids,
            source=annotations.source,
        )

    return subset(rest), subset(part)


class AnnotatedDataModule(ImageFilesDataModule):
    """Detection or segmentation data read from annotation files; subclasses read one format.

    Subclasses implement ``read_split(split) -> AnnotationSet | None`` (None: the split does not exist)
    and, for segmentation, ``mask_reader``. A missing validation split is cut from
    train (``val_fraction``, ``split_seed``); a missing test split falls back to validation. A detection
    split without a single object is a ``DataError`` (wrong paths, not data to train or score on). ``scan_images``
    and ``max_image_pixels``: ``base.ImageFilesDataModule``.
    """

    def __init__(
        self,
        task: str = "detection",
        image_size: int = 416,
        batch_size: int = 16,
        augment: str | dict[str, Any] = "standard",
        min_visibility: float = 0.3,
        min_area: float = 4.0,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        **options: Any,
    ) -> None:
        super().__init__(batch_size, **options)
        if task not in TASKS:
            raise ConfigError(f"data.task must be one of {', '.join(TASKS)}; got '{task}'")
        if image_size < 8:
            raise ConfigError(f"data.image_size must be >= 8; got {image_size}")
        self.task, self.image_size = task, image_size
        self.augment, self.min_visibility, self.min_area = augment, min_visibility, min_area
        self.val_fraction, self.split_seed = val_fraction, split_seed
        self._annotations: dict[str, AnnotationSet] | None = None
        # Fail on a bad preset now, not in a worker process.
        build_transforms(augment, image_size, train=True, min_visibility=min_visibility, min_area=min_area)

    # ---------------------------------------------------------------- format-specific
    @abstractmethod
    def read_split(self, split: str) -> AnnotationSet | None:
        """The annotations of ``split`` ("train", "val", "test"), or None when the data has no such split."""

    def mask_reader(self, annotations: AnnotationSet, num_classes: int) -> MaskReader:
        """A function giving the class map [H, W] (255 = ignore) of an image of ``annotations``."""
        raise ConfigError(f"{type(self).__name__} has no segmentation masks; use data.task=detection")

    # ---------------------------------------------------------------- splits
    def annotations(self, split: str) -> AnnotationSet:
        """The ``AnnotationSet`` behind ``split`` (after cutting val from train / test falling back to val)."""
        if self._annotations is None:
            self._annotations = self._read_all()
        return self._annotations[split]

    def _read_all(self) -> dict[str, AnnotationSet]:
        found = {split: self.read_split(split) for split in SPLITS}
        if found["train"] is None:
            raise DataError(f"{type(self).__name__}: no training split found")
        if found["val"] is None:
            found["train"], found["val"] = random_split_records(found["train"], self.val_fraction, self.split_seed)
        if found["test"] is None:
            found["test"] = found["val"]
        names = found["train"].categories
        for split, subset in found.items():
            if subset.categories != names:
                raise DataError(
                    f"{subset.source}: the {split} split's classes differ from train's "
                    f"({subset.categories[:5]}... vs {names[:5]}...); pass class_names"
                )
            if self.task == "detection" and subset.num_objects == 0:
                raise DataError(
                    f"{subset.source}: the {split} split's {len(subset.images)} images have no objects at all; "
                    "check the annotation files and paths (a detection split needs at least one box)"
                )
        return found

    @property
    def class_names(self) -> tuple[str, ...]:
        names = tuple(self.annotations("train").categories)
        return ("background", *names) if self.task == "segmentation" else names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # ---------------------------------------------------------------- loaders
    def dataset(self, split: str, train: bool | None = None) -> AnnotatedImageDataset:
        train = split == "train" if train is None else train
        # Evaluation only letterboxes: no box may be dropped from the targets there, however small. The
        # training seed is drawn from torch's generator, so that seed_everything fixes the augmentations too.
        transform = build_transforms(
            self.augment,
            self.image_size,
            train=train,
            min_visibility=self.min_visibility if train else 0.0,
            min_area=self.min_area if train else 0.0,
            seed=int(torch.randint(2**62, ()).item()) if train else None,
        )
        reader = self.mask_reader(self.annotations(split), self.num_classes) if self.task == "segmentation" else None
        return AnnotatedImageDataset(self.annotations(split), transform, reader, self.max_image_pixels)

    def setup(self, stage: str | None = None) -> None:
        """Read every split's annotations; read the header of every image of ``stage``'s splits (``scan_images``)."""
        self.annotations("train")
        self.scan_stage_images(stage)

    def image_files(self, split: str) -> list[Path]:
        annotations = self.annotations(split)
        return [annotations.image_path(record) for record in annotations.images]

    @property
    def collate_fn(self) -> Callable | None:
        return collate_detection if self.task == "detection" else None

    def prepare_targets(self, targets: Any) -> Any:
        return targets.long() if self.task == "segmentation" else targets


class AnnotationFilesDataModule(AnnotatedDataModule):
    """A format's annotation files under ``root``: ``splits`` maps train / val / test to the format's names for them
    (None: no such split), over its ``default_splits``; ``check_root`` says whether ``root`` has the format's layout."""

    default_splits: Mapping[str, str | None] = {"train": "train", "val": "val", "test": None}

    def __init__(self, root: str, splits: dict[str, str | None] | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.root = self.check_root(Path(root).expanduser())
        self.splits = {**self.default_splits, **(splits or {})}

    @staticmethod
    @abstractmethod
    def check_root(root: Path) -> Path:
        """``root`` if it has the format's layout, else a ``DataError`` that describes the layout."""
