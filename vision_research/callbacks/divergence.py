"""Stop a fit whose training loss turns NaN or inf, instead of training on NaN to the end.

The loss that goes into ``backward`` is checked at every step (Lightning's ``on_before_backward``; one host sync,
as the progress bar's loss already has). By default the first non-finite loss ends the fit with
:class:`~vision_research.errors.TrainingDiverged`, before its NaN gradients reach the weights and before any
checkpoint of that epoch is saved. With ``max_skipped_steps > 0``, up to that many non-finite steps in a row are
skipped instead: their gradients are dropped, so the optimizer leaves the weights alone (the skipped batch's
forward may still have moved BatchNorm statistics). Under DDP the decision is shared by all processes.
"""

from __future__ import annotations

import math

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch.optim import Optimizer

from ..errors import ConfigError, TrainingDiverged

HINT = "lower task.optimizer.lr, clip gradients (trainer.gradient_clip_val=1.0) or use trainer.precision=32-true"


def non_finite_terms(trainer: L.Trainer, loss: torch.Tensor) -> list[str]:
    """The loss terms logged in this step (``train/loss*``) that are not finite; ``loss`` when only the total is."""
    terms = [
        name
        for name, value in trainer.callback_metrics.items()
        if name.startswith("train/loss") and not math.isfinite(float(value))
    ]
    if terms:
        return terms
    return ["loss"] if not bool(torch.isfinite(loss).all()) else ["loss (on another process)"]


class DivergenceGuard(Callback):
    """Raises :class:`~vision_research.errors.TrainingDiverged` at a non-finite training loss, after skipping up to
    ``max_skipped_steps`` such optimizer steps in a row (each skip is warned about)."""

    def __init__(self, max_skipped_steps: int = 0) -> None:
        if max_skipped_steps < 0:
            raise ConfigError(f"divergence.max_skipped_steps must be 0 or more; got {max_skipped_steps}")
        self.max_skipped_steps = max_skipped_steps
        self._in_a_row = 0
        self._drop_gradients = False

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        diverged = trainer.strategy.reduce_boolean_decision(not bool(torch.isfinite(loss).all()), all=False)
        if not diverged:
            self._in_a_row = 0
            return
        self._in_a_row += 1
        if self._in_a_row > self.max_skipped_steps:
            skipped = f" after {self._in_a_row - 1} skipped step(s) in a row" if self.max_skipped_steps else ""
            raise TrainingDiverged(
                f"training diverged at global step {trainer.global_step} (epoch {trainer.current_epoch}){skipped}: "
                f"non-finite {', '.join(non_finite_terms(trainer, loss))}; {HINT}"
            )
        self._drop_gradients = True
        rank_zero_warn(
            f"skipping global step {trainer.global_step} (epoch {trainer.current_epoch}): non-finite "
            f"{', '.join(non_finite_terms(trainer, loss))} ({self._in_a_row} of divergence.max_skipped_steps="
            f"{self.max_skipped_steps} in a row)"
        )

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer) -> None:
        if self._drop_gradients:  # parameters without a gradient are left alone by torch's optimizers
            optimizer.zero_grad(set_to_none=True)
            self._drop_gradients = False
