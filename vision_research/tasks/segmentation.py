"""Semantic segmentation: a backbone with an FCN-32s / 16s / 8s head (Long, Shelhamer & Darrell 2015).

Loss: per-pixel cross-entropy, pixels labelled 255 ignored, optional class weights, plus an optional
auxiliary head on the stride-16 stage (``aux_loss_weight`` > 0; logged as ``train/loss_aux``). Metrics come
from one confusion matrix accumulated over the whole evaluation set and summed across DDP processes
(``metrics/segmentation.py``): ``val/miou`` (primary), ``val/pixel_acc``, ``val/mean_acc`` and
``val/iou_<class>``. Every ``log_images_every_n_epochs`` epochs the first validation images are logged
to TensorBoard as image | ground truth | prediction panels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..geometry import letterbox_geometry
from ..heads.fcn import AuxiliaryHead, FCNHead
from ..heads.stages import select_stages
from ..metrics.segmentation import SegmentationMetrics
from ..models import freeze_unused_by_features
from ..visualize import segmentation_panels
from .base import ImageLoggingTask, Prediction
from .registry import register_task


def class_maps_at_original(logits: torch.Tensor, originals: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Class maps (uint8) at each original's resolution from letterboxed ``logits`` [N, C, S, S]: the padding cut
    off, the scores resized bilinearly, then the argmax."""
    maps = []
    for scores, original in zip(logits, originals, strict=True):
        height, width = original.shape[:2]
        scale, pad_x, pad_y = letterbox_geometry(height, width, scores.shape[-1])
        top, left = round(pad_y), round(pad_x)
        content = scores[:, top : top + round(height * scale), left : left + round(width * scale)]
        resized = F.interpolate(content[None].float(), size=(height, width), mode="bilinear", align_corners=False)
        maps.append(resized[0].argmax(dim=0).to(torch.uint8).cpu().numpy())
    return maps


@register_task(name="segmentation")
class SemanticSegmenter(ImageLoggingTask):
    """FCN over a backbone given by name (rebuilt from hparams by ``load_from_checkpoint``).

    ``head`` holds the ``FCNHead`` options (``variant`` 32s / 16s / 8s, ``hidden_channels`` …); ``num_classes``
    counts the background (class 0).
    """

    monitor = "val/miou"
    output_names = ("scores",)
    free_input_axes = {2: "height", 3: "width"}  # class scores at the input's size: any height and width

    def __init__(
        self,
        model: str = "resnet18",
        num_classes: int = 21,
        in_chans: int = 3,
        *,
        head: dict[str, Any] | None = None,
        aux_loss_weight: float = 0.0,
        class_weights: Sequence[float] | None = None,
        ignore_index: int = 255,
        **options: Any,
    ) -> None:
        if class_weights is not None and len(class_weights) != num_classes:
            raise ConfigError(f"task.class_weights has {len(class_weights)} values for {num_classes} classes")
        super().__init__(model=model, num_classes=num_classes, in_chans=in_chans, **options)
        self.backbone = self.create_backbone()
        self.head = FCNHead(self.backbone.feature_info, num_classes, **(head or {}))
        self.aux_head = None
        read = list(self.head.stages)
        if aux_loss_weight > 0:
            stage = select_stages(self.backbone.feature_info, [16])[0]
            self.aux_stage = stage
            self.aux_head = AuxiliaryHead(self.backbone.feature_info[stage]["num_chs"], num_classes, stride=16)
            read.append(stage)
        freeze_unused_by_features(self.backbone, in_chans, read)
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
        self.criterion = nn.CrossEntropyLoss(weight=weight, ignore_index=ignore_index)
        names = list(self.hparams.class_names) if self.hparams.class_names is not None else None
        self.val_metrics = SegmentationMetrics(num_classes, ignore_index, names)
        self.test_metrics = SegmentationMetrics(num_classes, ignore_index, names)

    def pretrained_module(self) -> nn.Module:
        return self.backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores [N, C, H, W] at the input's size."""
        return self.head(self.backbone.forward_features(x), x.shape[-2:])

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, masks = batch
        features = self.backbone.forward_features(images)
        loss = main = self.criterion(self.head(features, images.shape[-2:]), masks)
        if self.aux_head is not None:
            aux = self.criterion(self.aux_head(features[self.aux_stage], images.shape[-2:]), masks)
            loss = main + self.hparams.aux_loss_weight * aux
            self.log_dict({"train/loss_main": main, "train/loss_aux": aux}, batch_size=len(images))
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(images))
        return loss

    def _evaluate(
        self, batch: tuple[torch.Tensor, torch.Tensor], stage: str, metrics: SegmentationMetrics
    ) -> torch.Tensor:
        images, masks = batch
        logits = self(images)
        self.log(f"{stage}/loss", self.criterion(logits, masks), on_epoch=True, sync_dist=True, batch_size=len(images))
        metrics.update(logits, masks)
        return logits

    def _log_metrics(self, stage: str, metrics: SegmentationMetrics) -> None:
        scores = metrics.compute()
        # A class absent from both truth and prediction has no IoU (NaN): left out rather than logged as NaN.
        miou = scores.pop("miou")
        self.log(f"{stage}/miou", miou.float(), prog_bar=True)
        self.log_dict({f"{stage}/{k}": v.float() for k, v in scores.items() if not math.isnan(v)})
        metrics.reset()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        logits = self._evaluate(batch, "val", self.val_metrics)
        if batch_idx == 0 and self._logging_images():
            self._log_panels(batch, logits)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val", self.val_metrics)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test", self.test_metrics)

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images = batch[0] if isinstance(batch, list | tuple) else batch
        return self(images).argmax(dim=1)

    def predict_images(
        self, images: torch.Tensor, originals: Sequence[np.ndarray], image_ids: Sequence[int]
    ) -> list[Prediction]:
        """Per image: its class map at the original resolution."""
        return [Prediction(mask=m) for m in class_maps_at_original(self(images), originals)]

    def _log_panels(self, batch: tuple[torch.Tensor, torch.Tensor], logits: torch.Tensor) -> None:
        pictures = self._pictures(batch[0])
        count = len(pictures)
        self._log_picture(segmentation_panels(pictures, batch[1][:count], logits[:count].argmax(dim=1)))
