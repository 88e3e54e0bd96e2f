"""A graph compiled for one batch size, called with any: short batches padded, long ones split.

Compiled and quantised graphs are specialised to the shape they were built for (a second shape would compile
again, for as long again). Evaluation's last batch is usually short, and ``vr predict``'s too, so
:class:`FixedBatch` pads a short batch with zero images, splits a long one into full ones, and keeps the first
``n`` rows of each output (every output's first axis is the batch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils import _pytree as pytree


class FixedBatch:
    """``run`` (built for batches of ``size``, channels-last when ``channels_last``) called on any batch size."""

    def __init__(self, run: Callable[[Tensor], Any], size: int, channels_last: bool = True) -> None:
        self.run = run
        self.size = size
        self.channels_last = channels_last

    def __call__(self, images: Tensor) -> Any:
        if self.channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        count = len(images)
        if count == self.size:
            return self.run(images)
        outputs = [self._part(images[start : start + self.size]) for start in range(0, count, self.size)]
        leaves, spec = zip(*(pytree.tree_flatten(output) for output in outputs), strict=True)
        return pytree.tree_unflatten([torch.cat(parts) for parts in zip(*leaves, strict=True)], spec[0])

    def _part(self, images: Tensor) -> Any:
        """The outputs of one chunk of at most ``size`` images, padded with zero images and trimmed back."""
        count = len(images)
        if count < self.size:
            padding = images.new_zeros((self.size - count, *images.shape[1:]))
            images = torch.cat([images, padding])
            if self.channels_last and images.dim() == 4:
                images = images.contiguous(memory_format=torch.channels_last)
        return pytree.tree_map(lambda output: output[:count], self.run(images))
