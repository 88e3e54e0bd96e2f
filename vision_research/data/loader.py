"""DataLoader settings shared by the file-backed datamodules: worker count and per-worker augmentation seeds."""

from __future__ import annotations

import os

import torch
from torch.utils.data import get_worker_info

from .transforms import seed_transform


def default_num_workers() -> int:
    """Loader processes sized to the machine: one per core up to 4 (decoding and augmenting is CPU work)."""
    return min(4, os.cpu_count() or 1)


def seed_worker_transform(worker_id: int) -> None:
    """``worker_init_fn``: each worker re-seeds its copy of ``dataset.transform`` from torch's per-worker seed.

    Forked workers would otherwise share albumentations' generator state and repeat each other's draws;
    torch's seed follows ``seed_everything``, so runs stay reproducible.
    """
    seed_transform(get_worker_info().dataset.transform, torch.initial_seed() % 2**63)
