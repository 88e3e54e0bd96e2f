"""What a run costs, for ``metrics.json`` and ``vr compare``: forward GFLOPs per image and training images/s.

GFLOPs come from ``torch.utils.flop_counter`` on one image of the first training batch (the task's whole
forward: backbone and head, at the real input size; a multiply-add counts 2 FLOPs, as in
:func:`vision_research.analysis.model_summary`). Training throughput counts the images of every training batch
over the time spent in training epochs, validation excluded, summed over DDP processes.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.flop_counter import FlopCounterMode

from ..models.base import evaluating


def batch_images(batch: Any) -> torch.Tensor:
    """The image tensor of a batch: the batch itself or its first element (``(images, targets)``)."""
    return batch[0] if isinstance(batch, list | tuple) else batch


def forward_gflops(module: torch.nn.Module, image: torch.Tensor) -> float:
    """GFLOPs of ``module``'s inference forward on one image (C, H, W); each sub-module's mode is restored.

    ``forward`` is called directly, so a module compiled in place (``speed.torch_compile``) is counted uncompiled."""
    with evaluating(module), torch.no_grad(), FlopCounterMode(display=False) as counter:
        module.forward(image.unsqueeze(0).float())
    return counter.get_total_flops() / 1e9


class TrainingThroughput(Callback):
    """Measures ``gflops`` (one image, inference forward) and ``images_per_second`` (training) of a fit.

    The per-epoch figure is logged as ``train/images_per_second``; the whole fit's figure (all epochs' images over
    all epochs' training time) is :attr:`images_per_second`, ``None`` before any training batch ran.
    """

    def __init__(self) -> None:
        self.gflops: float | None = None
        self.images = 0
        self.seconds = 0.0
        self._epoch_images = 0
        self._epoch_seconds = 0.0
        self._started: float | None = None
        self._resume_after_validation = False

    @property
    def images_per_second(self) -> float | None:
        return self.images / self.seconds if self.seconds > 0 and self.images else None

    def _pause(self) -> None:
        if self._started is not None:
            self._epoch_seconds += time.perf_counter() - self._started
            self._started = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_images, self._epoch_seconds = 0, 0.0
        self._started = time.perf_counter()

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.gflops is None:
            self._pause()  # counting FLOPs is not training time
            self.gflops = self._model_gflops(trainer, pl_module, batch_images(batch)[0])
            self._started = time.perf_counter()

    @staticmethod
    def _model_gflops(trainer: L.Trainer, pl_module: L.LightningModule, image: torch.Tensor) -> float:
        """GFLOPs of the whole model on one image: the batch's, or, when the batches hold cached features
        (``FeatureCache``), the first training image, so that the cost is that of the network, as for other runs."""
        if not getattr(pl_module, "inputs_are_features", False):
            return forward_gflops(pl_module, image)
        datamodule = trainer.datamodule
        image = datamodule.normalise(datamodule.dataset("train", train=False)[0][0][None].to(pl_module.device))[0]
        pl_module.inputs_are_features = False
        try:
            return forward_gflops(pl_module, image)
        finally:
            pl_module.inputs_are_features = True

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._epoch_images += len(batch_images(batch)) * trainer.world_size

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._resume_after_validation = self._started is not None
        self._pause()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._resume_after_validation:
            self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pause()
        self.images += self._epoch_images
        self.seconds += self._epoch_seconds
        if self._epoch_seconds > 0:
            pl_module.log("train/images_per_second", self._epoch_images / self._epoch_seconds, on_epoch=True)
