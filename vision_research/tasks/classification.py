"""Image classification: any registered backbone (own or ``timm:<name>``) with a softmax cross-entropy loss.

Models with auxiliary classifiers (GoogLeNet, Szegedy et al. 2015 §5) return ``(logits, *aux_logits)`` in
training mode; their losses are added with weight ``aux_loss_weight`` (0.3 in the paper) during training
only, and logged as ``train/loss_main`` and ``train/loss_aux``.

Logs ``train/loss``, ``train/acc1``, ``val/loss``, ``val/acc1``, ``val/acc5`` and the ``test/`` counterparts;
top-k accuracy comes from torchmetrics (micro-averaged, i.e. the fraction of images whose label is among
the k best scores). The primary metric, monitored for checkpoints, is ``val/acc1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from ..errors import ConfigError
from .base import Prediction, VisionTask
from .registry import register_task


@register_task(name="classification")
class ImageClassifier(VisionTask):
    """Classifier over a backbone given by name, so that ``load_from_checkpoint`` can rebuild it.

    ``optimizer`` / ``scheduler`` are the dicts described in :mod:`vision_research.optim`;
    ``pretrained`` is loaded when fitting starts (a different class count gets a new head): a local checkpoint laid
    out as ``pretrained_source`` says (native, torchvision or timm), or a tag, ``torchvision:<WeightsEnum name>`` or
    ``timm:<model>.<tag>``, whose prefix is the source (:mod:`vision_research.models.hub`); ``new_classifier`` gives a
    fresh classifier also for as many classes (another label set).
    """

    monitor = "val/acc1"
    inputs_are_features = False
    monitor_mode = "max"
    preprocessing = "resize_crop"
    prediction_columns = ("top-5 class:probability",)
    output_names = ("logits",)

    def __init__(
        self,
        model: str = "lenet5",
        num_classes: int = 10,
        in_chans: int = 1,
        *,
        new_classifier: bool = False,
        label_smoothing: float = 0.0,
        aux_loss_weight: float = 0.3,
        **options: Any,
    ) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"task.label_smoothing must be in [0, 1); got {label_smoothing}")
        super().__init__(model, num_classes, in_chans, **options)
        self.model = self.create_backbone(num_classes=num_classes)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        accuracy = MetricCollection(
            {
                "acc1": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
                "acc5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro"),
            }
        )
        self.train_metrics = accuracy.clone(prefix="train/")
        self.val_metrics = accuracy.clone(prefix="val/")
        self.test_metrics = accuracy.clone(prefix="test/")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inputs_are_features:  # callbacks.feature_cache: x holds the classifier's inputs, computed once
            return self.model.get_classifier()(x)
        return self.model(x)

    def pretrained_module(self) -> nn.Module:
        return self.model

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        output = self(images)
        if isinstance(output, tuple):  # (logits, *aux_logits) from a model with auxiliary classifiers
            logits, aux_outputs = output[0], output[1:]
            main_loss = self.criterion(logits, labels)
            aux_loss = sum(self.criterion(aux, labels) for aux in aux_outputs)
            loss = main_loss + self.hparams.aux_loss_weight * aux_loss
            self.log_dict({"train/loss_main": main_loss, "train/loss_aux": aux_loss}, batch_size=len(labels))
        else:
            logits, loss = output, self.criterion(output, labels)
        self.train_metrics["acc1"].update(logits.detach(), labels)
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(labels))
        self.log("train/acc1", self.train_metrics["acc1"], on_step=False, on_epoch=True)
        return loss

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str, metrics: MetricCollection) -> None:
        images, labels = batch
        logits = self(images)
        self.log(f"{stage}/loss", self.criterion(logits, labels), on_epoch=True, sync_dist=True, batch_size=len(labels))
        metrics.update(logits, labels)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage == "val")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_metrics)

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images = batch[0] if isinstance(batch, list | tuple) else batch
        return self(images).softmax(dim=1)

    def predict_images(
        self, images: torch.Tensor, originals: Sequence[np.ndarray], image_ids: Sequence[int]
    ) -> list[Prediction]:
        """The five most probable classes of each image, as ``name:probability`` cells."""
        probabilities = self.predict_step(images, 0)
        top = probabilities.topk(min(5, probabilities.shape[1]), dim=1)
        names = self.class_names
        return [
            Prediction(row=[f"{names[i]}:{s:.4f}" for s, i in zip(scores, labels, strict=True)])
            for scores, labels in zip(top.values.tolist(), top.indices.tolist(), strict=True)
        ]
