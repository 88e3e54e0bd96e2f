"""Classification from your own images, one folder per class (e.g. Kather's histology tiles, flower photos).

Layouts (class names are the sorted class-folder names, at least 2, one list for every split):

- ``root/<class>/<images>``: split here, stratified, into train / val / test (``val_fraction``,
  ``test_fraction``, ``split_seed``);
- ``root/train/<class>/<images>`` with optional ``root/val/<class>/...`` and ``root/test/<class>/...``:
  a missing val or test split is cut from train the same way. Every class of val / test must be in train,
  and root holds no other folder (a ``valid/`` next to ``train/`` is an error, not silently ignored).

Images are the files with a suffix of ``images.IMAGE_SUFFIXES``, searched recursively in each class folder;
hidden files and folders (``.name``) and other files are skipped. Nothing is downloaded.

At set-up (``setup(stage)``) the images of the stage's splits are checked (``base.ImageFilesDataModule``). Images
are read when a batch needs them (``load_rgb``: grayscale, palette, RGBA and 16-bit become 8-bit RGB; a file cut
short is a ``DataError`` naming it), cropped by ``build_classification_transforms`` and batched as uint8
[N, 3, S, S]; batches are scaled and normalised (``mean`` / ``std``, ImageNet statistics by default) on their device
in ``on_after_batch_transfer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from .base import ImageFilesDataModule
from .images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, load_rgb
from .in_memory import stratified_split
from .loader import SPLITS
from .registry import register_datamodule
from .transforms import build_classification_transforms

LAYOUT = (
    "Expected root/<class>/<images> (split here into train/val/test), or root/train/<class>/<images> "
    "with optional root/val/<class>/... and root/test/<class>/... Nothing is downloaded."
)


@dataclass
class ImageList:
    """Image files and their class indices."""

    files: list[Path]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, indices: np.ndarray) -> ImageList:
        return ImageList([self.files[i] for i in indices], self.labels[indices])


class ImageFileDataset(Dataset):
    """(uint8 [3, S, S] image, class index) pairs, read from disk and transformed on access.

    An image of more than ``max_pixels`` pixels (None: no limit) is a ``DataError``, as is one that cannot be decoded.
    """

    def __init__(self, images: ImageList, transform: A.Compose, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
        self.images, self.transform, self.max_pixels = images, transform, max_pixels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.transform(image=load_rgb(self.images.files[index], max_pixels=self.max_pixels))["image"]
        label = int(self.images.labels[index])
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous(), label


def _hidden(path: Path, base: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(base).parts)


def list_images(class_dir: Path) -> list[Path]:
    """The image files under ``class_dir`` (recursively, sorted); none is a ``DataError``."""
    files = sorted(
        p
        for p in class_dir.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not _hidden(p, class_dir)
    )
    if not files:
        raise DataError(
            f"{class_dir}: class folder without images (files ending in {', '.join(IMAGE_SUFFIXES)}). {LAYOUT}"
        )
    return files


def scan_classes(folder: Path) -> dict[str, list[Path]]:
    """{class name: its image files} for the class folders of ``folder``, in sorted name order."""
    class_dirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{folder}: no class folders in it. {LAYOUT}")
    return {d.name: list_images(d) for d in class_dirs}


def read_layout(root: Path) -> dict[str, dict[str, list[Path]]]:
    """{split: {class: files}} for the splits found on disk; a root without train/ is the train split."""
    folders = {d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")}
    if "train" not in folders:
        if folders & {"val", "test"}:
            raise DataError(f"{root}: has {' and '.join(sorted(folders & {'val', 'test'}))}/ but no train/. {LAYOUT}")
        return {"train": scan_classes(root)}
    if folders - set(SPLITS):
        raise DataError(f"{root}: folders {sorted(folders - set(SPLITS))} next to train/. {LAYOUT}")
    return {split: scan_classes(root / split) for split in SPLITS if split in folders}


def to_image_list(classes: dict[str, list[Path]], class_names: Sequence[str], folder: Path) -> ImageList:
    """The files of ``classes`` labelled by their index in ``class_names`` (train's); other classes are errors."""
    unknown = sorted(set(classes) - set(class_names))
    if unknown:
        raise DataError(
            f"{folder}: class folder(s) {', '.join(unknown)} are not in train (classes: {list(class_names)})"
        )
    index = {name: i for i, name in enumerate(class_names)}
    files = [path for paths in classes.values() for path in paths]
    labels = [index[name] for name, paths in classes.items() for _ in paths]
    return ImageList(files, np.array(labels, dtype=np.int64))


@register_datamodule(name="image_folder")
class ImageFolderDataModule(ImageFilesDataModule):
    """Images in a folder per class (layouts in the module docstring), for training or fine-tuning classifiers."""

    in_chans = 3

    def __init__(
        self,
        root: str,
        image_size: int = 224,
        batch_size: int = 32,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        augment: str = "standard",
        crop_ratio: float = 0.875,
        **options: Any,
    ) -> None:
        super().__init__(batch_size, **options)
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataError(f"data.root '{self.root}' is not a folder. {LAYOUT}")
        build_classification_transforms(image_size, train=True, preset=augment, crop_ratio=crop_ratio)  # fail early
        self.image_size, self.augment, self.crop_ratio = image_size, augment, crop_ratio
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        self.splits: dict[str, ImageList] | None = None
        self._class_names: tuple[str, ...] = ()

    def setup(self, stage: str | None = None) -> None:
        """Find and split the images (once); read the header of every image of ``stage``'s splits (``scan_images``)."""
        self._read_splits()
        self.scan_stage_images(stage)

    def image_files(self, split: str) -> list[Path]:
        self._read_splits()
        return self.splits[split].files

    def _read_splits(self) -> None:
        if self.splits is not None:
            return
        found = read_layout(self.root)
        self._class_names = tuple(found["train"])
        if len(self._class_names) < 2:
            raise DataError(
                f"{self.root}: the training images have one class folder ({self._class_names[0]}); a classifier "
                "needs at least 2 classes, a folder of images for each"
            )
        splits = {s: to_image_list(found[s], self._class_names, self.root / s) for s in found}
        train = splits.pop("train")
        missing = [s for s in ("val", "test") if s not in splits]
        if missing:
            fractions = [self.val_fraction if s == "val" else self.test_fraction for s in missing]
            rest, *parts = stratified_split(train.labels, fractions, self.split_seed)
            splits.update({s: train.subset(part) for s, part in zip(missing, parts, strict=True)})
            train = train.subset(rest)
        self.splits = {"train": train, **splits}

    @property
    def class_names(self) -> tuple[str, ...]:
        self._read_splits()
        return self._class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split_sizes(self) -> dict[str, int]:
        self._read_splits()
        return {name: len(self.splits[name]) for name in SPLITS}

    @property
    def augments_training(self) -> bool:
        return self.augment != "none"

    def dataset(self, split: str, train: bool | None = None) -> ImageFileDataset:
        self._read_splits()
        train = split == "train" if train is None else train
        # Drawn from torch's generator, so that seed_everything fixes the augmentations too.
        seed = int(torch.randint(2**62, ()).item()) if train and self.augments_training else None
        transform = build_classification_transforms(self.image_size, train, self.augment, self.crop_ratio, seed)
        return ImageFileDataset(self.splits[split], transform, self.max_image_pixels)
