"""Keep the random generators' state in every checkpoint, so that a resumed run draws what the first one would have.

Lightning restores weights, optimizer, scheduler and loop counters from a checkpoint but not the generators that
shuffle the training set and pick the augmentations (Python's ``random``, NumPy's global generator, torch's CPU and
CUDA generators, and the generators of the training set's albumentations pipeline when no loader workers read it).
This callback stores them when a checkpoint is written (the end of an epoch, after validation) and puts them back
when the first epoch after a resume starts, before the epoch's data order is drawn — the point at which the
uninterrupted run continued with those same states. The states are stored as tensors and tuples of ints, which a
``weights_only`` load accepts.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

KEY = "random_state"
TRANSFORM = "training_transform"


def random_state() -> dict[str, Any]:
    """The state of Python's, NumPy's and torch's generators (CUDA ones too, when CUDA is in use)."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # GPU-only branch
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: dict[str, Any]) -> None:
    """Put back what :func:`random_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():  # GPU-only branch
        torch.cuda.set_rng_state_all(state["cuda"])


def in_process_transform(trainer: L.Trainer) -> Any:
    """The albumentations pipeline of the training set when the training process reads it (no loader workers):
    its generators run through the whole fit (workers instead seed theirs each epoch, ``data/loader.py``)."""
    loader = trainer.train_dataloader
    if getattr(loader, "num_workers", None) != 0:
        return None
    transform = getattr(getattr(loader, "dataset", None), "transform", None)
    return transform if hasattr(transform, "random_generator") else None


def transform_state(transform: Any) -> dict[str, Any]:
    """The state of an albumentations pipeline's NumPy and Python generators (``seed_transform`` shares them)."""
    return {"numpy": transform.random_generator.bit_generator.state, "python": transform.py_random.getstate()}


def set_transform_state(transform: Any, state: dict[str, Any]) -> None:
    """Put back what :func:`transform_state` returned."""
    transform.random_generator.bit_generator.state = state["numpy"]
    version, internal, gauss = state["python"]
    transform.py_random.setstate((version, tuple(internal), gauss))


class RandomStateCheckpoint(Callback):
    """Stores the generators' state in each checkpoint and restores it at the first training epoch after a resume.

    Under DDP every process restores the state of rank 0, which wrote the checkpoint (all start from one seed); the
    data order there comes from the distributed sampler's seed and epoch.
    """

    def __init__(self) -> None:
        self._restored: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint[KEY] = random_state()
        transform = in_process_transform(trainer)
        if transform is not None:
            checkpoint[KEY][TRANSFORM] = transform_state(transform)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._restored = checkpoint.get(KEY)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._restored is None:
            return
        set_random_state(self._restored)
        transform = in_process_transform(trainer)
        if transform is not None and TRANSFORM in self._restored:
            set_transform_state(transform, self._restored[TRANSFORM])
        self._restored = None
        # On a resume Lightning starts the epoch's loader iterator (which draws the shuffle order) before this hook,
        # from the generators' state before the restore; start it again, as it does after this hook in every
        # other epoch.
        iter(trainer.fit_loop._data_fetcher)
