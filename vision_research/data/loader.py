"""DataLoader settings shared by the datamodules: worker count, per-worker augmentation seeds, evaluation sampler,
the splits each Lightning stage reads."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler, get_worker_info

from .transforms import seed_transform

SPLITS = ("train", "val", "test")
STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}


def default_num_workers() -> int:
    """Loader processes sized to the machine: one per core up to 4 (decoding and augmenting is CPU work)."""
    return min(4, os.cpu_count() or 1)


def stage_splits(stage: str | None) -> tuple[str, ...]:
    """The splits the Lightning ``stage`` reads ("fit": train and val, ...; None: every split)."""
    return STAGE_SPLITS.get(stage, SPLITS)


def seed_worker_transform(worker_id: int) -> None:
    """``worker_init_fn``: each worker re-seeds its copy of ``dataset.transform`` from torch's per-worker seed.

    Forked workers would otherwise share albumentations' generator state and repeat each other's draws;
    torch's seed follows ``seed_everything``, so runs stay reproducible.
    """
    seed_transform(get_worker_info().dataset.transform, torch.initial_seed() % 2**63)


def evaluation_sampler(dataset: Dataset, trainer: Any) -> Sampler | None:
    """Under DDP, each evaluation sample on exactly one process (None otherwise: Lightning's default applies).

    Lightning's default ``DistributedSampler`` pads the last round by repeating samples so that every process
    gets as many; metrics summed across processes (confusion matrices, accuracies) would count those twice.
    Evaluation needs no equal counts (the metrics synchronise once, at the end), so it gets each sample once.
    """
    if trainer is None or trainer.world_size <= 1:
        return None
    from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

    return UnrepeatedDistributedSampler(
        dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
    )
