"""An exponential moving average of the weights with a warm-up, for validation, checkpoints and the test.

After ``n`` updates the average moves with decay ``min(decay, (1 + n) / (10 + n))`` — the ``num_updates`` rule of
TensorFlow's ``tf.train.ExponentialMovingAverage``, which ultralytics' and timm's EMAs also ramp in their own way.
Without it, the average of a short run keeps ``decay**steps`` of the random initial weights (0.999 over 2,600
steps: 7 %), which is enough to wreck a detector's evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor

from ..errors import ConfigError


def warmup_decay(decay: float, num_updates: Tensor | int) -> Tensor:
    """The decay of update ``num_updates`` (0-based count of earlier updates): ``min(decay, (1 + n) / (10 + n))``,
    a 0-dim tensor on the count's device (no host synchronisation on a GPU)."""
    n = torch.as_tensor(num_updates).float()
    return torch.clamp((1 + n) / (10 + n), max=decay)


def warmup_ema_fn(decay: float) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """``AveragedModel``'s ``avg_fn``: the averaged parameter after one more update from ``current``."""

    @torch.no_grad()
    def update(averaged: Tensor, current: Tensor, num_averaged: Tensor) -> Tensor:
        d = warmup_decay(decay, num_averaged)
        return d * averaged + (1 - d) * current

    return update


class WarmupEMA(WeightAveraging):
    """Lightning's weight averaging with the warm-up EMA above, updated after every optimizer step; buffers (batch
    norm statistics) are averaged too.

    A checkpoint's ``state_dict`` holds the average (the training weights go to ``current_model_state``). Lightning
    restores the training weights from every checkpoint the trainer loads while the average exists, so the test
    after fitting (``trainer.test(ckpt_path=...)``) would score them; here only resuming a fit does.
    """

    def __init__(self, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"callbacks.ema_decay must be in (0, 1); got {decay}")
        super().__init__(use_buffers=True, avg_fn=warmup_ema_fn(decay))

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
