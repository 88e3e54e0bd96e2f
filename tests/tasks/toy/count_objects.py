"""A task that lives outside the package: count the objects of an image — a regression on a backbone's pooled last
stage, trained with the squared error and scored by the mean absolute error.

It is here to show that a new task is one file and nothing else: this module registers it, ``configs/task/
count_objects.yaml`` beside it is its config group option, and ``vr train --config-dir ... 'imports=[...]'`` trains
it; ``vr eval`` / ``vr predict`` / ``vr export`` read the run's ``imports`` and load it like any built-in task.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanAbsoluteError

from vision_research.tasks import register_task
from vision_research.tasks.base import Prediction, VisionTask


def object_counts(targets: Sequence[dict[str, Tensor]], device: torch.device) -> Tensor:
    """The number of boxes of each image's target, as floats."""
    return torch.tensor([len(target["boxes"]) for target in targets], dtype=torch.float32, device=device)


@register_task(name="count_objects")
class ObjectCounter(VisionTask):
    """Backbone → global average pooling of its last stage → Linear → the number of objects."""

    monitor = "val/mae"
    monitor_mode = "min"
    prediction_columns = ("count",)
    output_names = ("count",)

    def __init__(self, model: str = "resnet18", num_classes: int = 1, in_chans: int = 3, **options: Any) -> None:
        super().__init__(model, num_classes, in_chans, **options)
        self.backbone = self.create_backbone()
        self.head = nn.Linear(self.backbone.feature_info[-1]["num_chs"], 1)
        self.val_metrics = MeanAbsoluteError()
        self.test_metrics = MeanAbsoluteError()

    def pretrained_module(self) -> nn.Module:
        return self.backbone

    def forward(self, x: Tensor) -> Tensor:
        """The predicted number of objects of each image [N]."""
        return self.head(self.backbone.forward_features(x)[-1].mean(dim=(2, 3))).squeeze(1)

    def training_step(self, batch: tuple[Tensor, list[dict]], batch_idx: int) -> Tensor:
        images, targets = batch
        loss = F.mse_loss(self(images), object_counts(targets, images.device))
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(images))
        return loss

    def _evaluate(self, batch: tuple[Tensor, list[dict]], stage: str) -> None:
        images, targets = batch
        predicted, counts = self(images), object_counts(targets, images.device)
        self.log(f"{stage}/loss", F.mse_loss(predicted, counts), on_epoch=True, sync_dist=True, batch_size=len(images))
        metric = getattr(self, f"{stage}_metrics")
        metric.update(predicted, counts)
        self.log(f"{stage}/mae", metric, on_step=False, on_epoch=True, prog_bar=stage == "val")

    def validation_step(self, batch: tuple[Tensor, list[dict]], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[Tensor, list[dict]], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_images(
        self, images: Tensor, originals: Sequence[np.ndarray], image_ids: Sequence[int]
    ) -> list[Prediction]:
        """Per image: its predicted number of objects."""
        return [Prediction(row=[f"{count:.2f}"]) for count in self(images).tolist()]
