"""What the detection metrics share: per-sample states gathered across processes, each image counted once.

A metric keeps, per sample, its image id and how many rows (detections, ground-truth objects) it added, and the
rows themselves; torchmetrics concatenates every state rank by rank under DDP (``dist_reduce_fx="cat"``), so
sample and row order agree after the sync. The DistributedSampler pads the last batch by repeating samples: an
image can then arrive more than once, as another block of rows for the same id, and only its first block counts.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.utilities import dim_zero_cat


def first_occurrences(ids: Tensor) -> Tensor:
    """A bool mask over ``ids`` marking the first occurrence of each value."""
    unique, inverse = torch.unique(ids, return_inverse=True)
    first = torch.full((len(unique),), len(ids), dtype=torch.int64)
    first = first.scatter_reduce(0, inverse, torch.arange(len(ids)), reduce="amin")
    mask = torch.zeros(len(ids), dtype=torch.bool)
    mask[first] = True
    return mask


def cat_state(state: list[Tensor] | Tensor, empty: Tensor) -> Tensor:
    """A list (or, after a DDP sync, already concatenated) state as one CPU tensor; ``empty`` when none."""
    if isinstance(state, list) and not state:
        return empty
    return dim_zero_cat(state).cpu()
