"""Classification datamodules whose whole split fits in memory as one uint8 tensor (the digit sets: ``mnist.py``,
``digits.py``), and what they share: the splits, stratified splitting, padding and the digits' class names.

Batches travel as uint8 and are scaled, augmented (training only: ``augment``, a ``RandomAffineBatch``) and
normalised on their device (``base.VisionDataModule``).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset

from ..errors import ConfigError
from .base import VisionDataModule
from .batch_augment import RandomAffineBatch

DIGIT_CLASSES = tuple(str(d) for d in range(10))  # MNIST's and scikit-learn's digits alike


@dataclass
class Split:
    """One split: uint8 images [N, C, H, W] and int64 labels [N]."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


class TensorImageDataset(Dataset):
    """(uint8 image, label) pairs from two tensors."""

    def __init__(self, split: Split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split.images[index], self.split.labels[index]


def stratified_split(labels: np.ndarray, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Indices of stratified parts holding ``fractions`` of the whole (rounded); the rest comes first."""
    if any(f <= 0 for f in fractions) or sum(fractions) >= 1:
        raise ConfigError(f"split fractions must be positive and sum to less than 1; got {list(fractions)}")
    rest, parts, num_classes = np.arange(len(labels)), [], len(np.unique(labels))
    for fraction in fractions:
        size = round(fraction * len(labels))
        if size < num_classes or len(rest) - size < num_classes:
            raise ConfigError(
                f"a stratified split of {fraction} of {len(labels)} images gives {size}, but every part needs at "
                f"least one image of each of the {num_classes} classes; change the fraction or add data"
            )
        rest, part = train_test_split(rest, test_size=size, stratify=labels[rest], random_state=seed)
        parts.append(np.sort(part))
    return [np.sort(rest), *parts]


def pad_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad [N, C, H, W] images symmetrically to ``size``×``size`` (LeNet-5 pads MNIST 28 → 32)."""
    h, w = images.shape[-2:]
    if size < max(h, w):
        raise ConfigError(f"image_size={size} is smaller than the images ({h}×{w}); padding cannot shrink them")
    top, left = (size - h) // 2, (size - w) // 2
    return torch.nn.functional.pad(images, (left, size - w - left, top, size - h - top))


class InMemoryClassificationDataModule(VisionDataModule):
    """Train / val / test splits held as tensors; subclasses implement ``load_splits`` (the images at
    ``image_size``, split stratified by ``val_fraction``, ``test_fraction`` and ``split_seed``) and give the
    per-channel ``mean`` / ``std`` (``set_channel_stats``; 0 / 1 until then). Every batch is kept in training.

    For transfer experiments (Yosinski et al. 2014 split ImageNet's classes in two halves): ``classes`` keeps only
    those classes (their indices in ``all_class_names``), numbered 0, 1, … in the order given; ``train_per_class``
    keeps that many training images per class (a small labelled set, drawn with ``split_seed``; val and test whole).
    """

    all_class_names: tuple[str, ...]
    in_chans = 1
    drop_last_train = False

    def __init__(
        self,
        image_size: int = 32,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        batch_size: int = 64,
        num_workers: int = 0,
        augment: dict[str, float] | None = None,
        eval_batch_size: int | None = None,
        classes: Sequence[int] | None = None,
        train_per_class: int | None = None,
    ) -> None:
        super().__init__(batch_size, eval_batch_size or max(batch_size, 256), num_workers, None, (0.0,), (1.0,))
        if image_size < 8:
            raise ConfigError(f"data.image_size must be >= 8; got {image_size}")
        self.image_size_px, self.split_seed = image_size, split_seed
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.augment = RandomAffineBatch(**augment) if augment else None
        self.splits: dict[str, Split] | None = None
        if classes is not None and (len(set(classes)) != len(classes) or not classes):
            raise ConfigError(f"data.classes must list distinct class indices; got {list(classes)}")
        if train_per_class is not None and train_per_class < 1:
            raise ConfigError(f"data.train_per_class must be >= 1 or null; got {train_per_class}")
        self.classes = None if classes is None else [int(c) for c in classes]
        self.train_per_class = train_per_class

    @abstractmethod
    def load_splits(self) -> dict[str, Split]:
        """Read the data and return {"train", "val", "test"} splits of uint8 images."""

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            splits = self.load_splits()
            if self.classes is not None:
                splits = {name: self._keep_classes(split) for name, split in splits.items()}
            if self.train_per_class is not None:
                splits["train"] = self._few_per_class(splits["train"])
            self.splits = splits

    def _keep_classes(self, split: Split) -> Split:
        unknown = [c for c in self.classes if not 0 <= c < len(self.all_class_names)]
        if unknown:
            raise ConfigError(f"data.classes: {unknown} not among the classes 0..{len(self.all_class_names) - 1}")
        numbering = torch.full((len(self.all_class_names),), -1, dtype=torch.int64)
        numbering[self.classes] = torch.arange(len(self.classes))
        kept = numbering[split.labels] >= 0
        return Split(split.images[kept], numbering[split.labels[kept]])

    def _few_per_class(self, split: Split) -> Split:
        rng = np.random.default_rng(self.split_seed)
        chosen = []
        for label in range(self.num_classes):
            (indices,) = np.nonzero(split.labels.numpy() == label)
            if len(indices) < self.train_per_class:
                raise ConfigError(
                    f"data.train_per_class={self.train_per_class}, but class {self.class_names[label]!r} has "
                    f"{len(indices)} training images"
                )
            chosen.append(rng.choice(indices, self.train_per_class, replace=False))
        keep = torch.from_numpy(np.sort(np.concatenate(chosen)))
        return Split(split.images[keep], split.labels[keep])

    @property
    def class_names(self) -> tuple[str, ...]:
        if self.classes is None:
            return self.all_class_names
        return tuple(self.all_class_names[c] for c in self.classes)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> tuple[int, int]:
        self.setup()
        return tuple(self.splits["train"].images.shape[-2:])

    def split_sizes(self) -> dict[str, int]:
        self.setup()
        return {name: len(split) for name, split in self.splits.items()}

    def dataset(self, split: str, train: bool | None = None) -> TensorImageDataset:
        self.setup()
        return TensorImageDataset(self.splits[split])

    @property
    def augments_training(self) -> bool:
        return self.augment is not None

    def augment_batch(self, images: torch.Tensor) -> torch.Tensor:
        return self.augment(images) if self.augment is not None else images
