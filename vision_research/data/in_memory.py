"""Classification datamodules whose whole split fits in memory as one uint8 tensor (digit sets).

Batches travel as uint8 (4× less to copy than float) and are scaled, augmented (training only) and
normalised on their device in ``on_after_batch_transfer``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset

from ..errors import ConfigError
from .batch_augment import RandomAffineBatch
from .loader import evaluation_sampler


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


class InMemoryClassificationDataModule(L.LightningDataModule):
    """Train / val / test splits held as tensors; subclasses implement ``load_splits``."""

    class_names: tuple[str, ...]
    in_chans: int = 1
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        augment: dict[str, float] | None = None,
        eval_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1; got {batch_size}")
        self.batch_size, self.num_workers = batch_size, num_workers
        self.eval_batch_size = eval_batch_size or max(batch_size, 256)
        self.augment = RandomAffineBatch(**augment) if augment else None
        self.splits: dict[str, Split] | None = None

    @abstractmethod
    def load_splits(self) -> dict[str, Split]:
        """Read the data and return {"train", "val", "test"} splits of uint8 images."""

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            self.splits = self.load_splits()

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

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        dataset = TensorImageDataset(self.splits[split])
        return DataLoader(
            dataset,
            batch_size=self.batch_size if shuffle else self.eval_batch_size,
            shuffle=shuffle,
            sampler=None if shuffle else evaluation_sampler(dataset, self.trainer),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def normalise(self, images: torch.Tensor, train: bool = False) -> torch.Tensor:
        """uint8 [N, C, H, W] → float, augmented when ``train``, normalised with the dataset's mean/std."""
        x = images.float().div_(255.0)
        if train and self.augment is not None:
            x = self.augment(x)
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        training = self.trainer is not None and self.trainer.training
        return self.normalise(images, train=training), labels
