"""The base of every datamodule: its loaders and the normalisation of its batches.

Batches travel as uint8 images (4× less to copy than float) and become float images normalised with the
datamodule's per-channel ``mean`` / ``std`` on their device (``on_after_batch_transfer``): one rule for every
datamodule and for ``vr predict`` (:func:`normalise`; the statistics fitted to the channel count by
``constants.check_channel_stats``). A subclass gives its datasets (``dataset``) and may augment training
batches on the device (``augment_batch``) or convert the targets there (``prepare_targets``).

Data read from image files on disk (``ImageFilesDataModule``: a folder per class, annotation files) is checked at
set-up (``setup(stage)``): the header of every image of the stage's splits is read (``images.scan_images``, unless
``scan_images=False``), and missing, empty, unreadable images and images above ``max_image_pixels`` are one
``DataError`` naming them, before any training.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from ..constants import IMAGENET_MEAN, IMAGENET_STD, check_channel_stats
from ..errors import ConfigError, check_value
from .images import DEFAULT_MAX_PIXELS, check_max_pixels, scan_images
from .loader import default_num_workers, evaluation_sampler, seed_worker_transform, stage_splits


def normalise(
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """uint8 images [N, C, H, W] → float ``(x / 255 − mean) / std`` per channel, with ``augment`` applied to the
    [0, 1] values first when given."""
    x = images.float().div_(255.0)
    if augment is not None:
        x = augment(x)
    return (x - x.new_tensor(mean).view(1, -1, 1, 1)) / x.new_tensor(std).view(1, -1, 1, 1)


class VisionDataModule(L.LightningDataModule):
    """Loaders of the train / val / test splits (predict reads test) and on-device normalisation.

    ``in_chans`` is the images' channel count; ``mean`` / ``std`` have one value per channel (or one for all).
    Training shuffles and, when ``drop_last_train`` and the split holds more than a batch, drops the last
    incomplete batch (no batch of 1 for batch norm); evaluation gives each sample to one process under DDP and
    uses ``eval_batch_size``. ``num_workers`` None: one per core up to 4; ``pin_memory`` None: when CUDA is there;
    ``persistent_workers`` (image files): keep the workers between epochs (a resumed run then draws other
    augmentations than the uninterrupted one).
    """

    in_chans: int = 3
    drop_last_train: bool = True
    persistent_workers: bool = False
    collate_fn: Callable | None = None

    def __init__(
        self,
        batch_size: int,
        eval_batch_size: int | None,
        num_workers: int | None,
        pin_memory: bool | None,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1; got {batch_size}")
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.set_channel_stats(mean, std)
        self._cached_features: dict[str, Dataset] = {}

    @property
    def augments_training(self) -> bool:
        """Whether training images are augmented (random transforms in the dataset or ``augment_batch``)."""
        return True

    def use_cached_features(self, datasets: dict[str, Dataset]) -> None:
        """Serve these splits' samples (features computed once, ``callbacks.feature_cache``) instead of images, their
        batches passed on as they are; ``{}`` goes back to the images."""
        self._cached_features = dict(datasets)

    def set_channel_stats(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Normalise with ``mean`` / ``std`` from now on (checked against ``in_chans``)."""
        self.mean, self.std = check_channel_stats(mean, std, self.in_chans)

    @abstractmethod
    def dataset(self, split: str, train: bool | None = None) -> Dataset:
        """The dataset of ``split``, with training augmentation when ``train`` (None: when the split is train)."""

    def _loader(self, split: str, train: bool) -> DataLoader:
        cached = split in self._cached_features
        dataset = self._cached_features[split] if cached else self.dataset(split, train)
        workers = 0 if cached else self.num_workers  # features in memory: workers would only add start-up time
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            sampler=None if train else evaluation_sampler(dataset, self.trainer),
            drop_last=train and self.drop_last_train and len(dataset) > self.batch_size,
            num_workers=workers,
            # By default training workers start anew each epoch, their seeds drawn from torch's generator as the
            # epoch's shuffle is: a resumed run, whose generators are restored, draws what the uninterrupted one did.
            # Evaluation workers stay, drawing their seeds once from a generator of their own, which leaves torch's
            # to the training data. (Persistent training workers draw their seeds once, when first started, and keep
            # generators no checkpoint holds.)
            persistent_workers=workers > 0 and (self.persistent_workers or not train),
            generator=torch.Generator() if workers > 0 and not (train or self.persistent_workers) else None,
            pin_memory=self.pin_memory,
            collate_fn=None if cached else self.collate_fn,
            # Each worker re-seeds its copy of an augmenting dataset's transform (loader.seed_worker_transform).
            worker_init_fn=seed_worker_transform if train and hasattr(dataset, "transform") else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def augment_batch(self, images: torch.Tensor) -> torch.Tensor:
        """Augment a float [0, 1] training batch on its device; default: unchanged."""
        return images

    def prepare_targets(self, targets: Any) -> Any:
        """The batch's targets as the task takes them; default: unchanged."""
        return targets

    def normalise(self, images: torch.Tensor, train: bool = False) -> torch.Tensor:
        """uint8 [N, C, H, W] → float, augmented when ``train`` (``augment_batch``), normalised per channel."""
        return normalise(images, self.mean, self.std, self.augment_batch if train else None)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self._cached_features:
            return batch
        images, targets = batch
        training = self.trainer is not None and self.trainer.training
        return self.normalise(images, train=training), self.prepare_targets(targets)


class ImageFilesDataModule(VisionDataModule):
    """A datamodule whose images are files on disk, with the options such data shares: ImageNet's ``mean`` / ``std``
    by default, and the set-up check of the files (module docstring). Subclasses list each split's ``image_files``
    and call ``scan_stage_images`` from ``setup``."""

    def __init__(
        self,
        batch_size: int,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        scan_images: bool = True,
        max_image_pixels: int | None = DEFAULT_MAX_PIXELS,
        persistent_workers: bool = False,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, pin_memory, mean, std)
        self.scan_images, self.max_image_pixels = scan_images, check_max_pixels(max_image_pixels)
        self.persistent_workers = check_value("data.persistent_workers", persistent_workers, "true or false")
        self._scanned: set[str] = set()

    @abstractmethod
    def image_files(self, split: str) -> list[Path]:
        """The image files of ``split``."""

    def scan_stage_images(self, stage: str | None) -> None:
        """Read the header of every image of ``stage``'s splits (``scan_images``); a split once, as Lightning sets up
        again what ``vr train`` set up."""
        splits = [split for split in stage_splits(stage) if split not in self._scanned]
        if self.scan_images and splits:
            paths = dict.fromkeys(path for split in splits for path in self.image_files(split))  # test may be val
            scan_images(list(paths), self.max_image_pixels)
            self._scanned.update(splits)
