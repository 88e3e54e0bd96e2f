"""Classification + localisation of one object per image (Sermanet et al. 2014, OverFeat; Géron ch. 14).

The backbone's last stage, global-average-pooled, feeds two linear heads side by side: class scores (C) and
a box of four sigmoid outputs (cx, cy, √w, √h) — the centre as fractions of the input's width and height,
then the square roots of the box's width and height as fractions of the input's, so that a given error costs
less on a large box than on a small one (Redmon et al. 2016, YOLO v1 §2.2; Géron ch. 14). The sigmoid keeps
every predicted box inside the input (Géron's 3rd edition puts no activation on w, h, so its boxes can extend
past the image; here objects never do).

Loss: ``CE(class) + box_loss_weight · MSE(box)``, the MSE averaged over images and the four numbers;
``box_loss_weight`` defaults to 5, YOLO's λ_coord (Redmon et al. 2016 §2.2), because the box numbers live in
[0, 1] and their squared errors are far smaller than a cross-entropy. YOLO sums the four squared errors where
this MSE averages them, so YOLO's own weighting is 20 here: ``experiment=localize_shapes`` uses 20 (val/loc_acc
≥ 0.9 from epoch 21 of 30, test 0.95), where 5 ended at 0.69. Logged as ``train/loss_cls``,
``train/loss_box`` and ``train/loss``.

Batches come from the detection datamodules: images and one target dict per image (``boxes`` xyxy pixels of
the network input, ``labels``). Each image's object is its largest box (the first of the largest on ties);
with the shapes data at ``max_objects: 1`` it is the only one. An image without a box (training augmentation
can crop the object away) has neither class nor box to learn: it is left out of the losses and the metrics.

Metrics: ``val/acc1`` (class), ``val/iou`` (mean IoU of predicted and true boxes, ``torchvision.ops.box_iou``)
and ``val/loc_acc``, the ILSVRC localisation accuracy (Russakovsky et al. 2015): the fraction of images whose
class is right AND whose box has IoU ≥ ``iou_threshold`` (0.5) with the truth. The primary metric is
``val/loc_acc``. ``predict_step`` returns per image the box (xyxy input pixels), class and its probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy
from torchvision.ops import box_area, box_iou

from ..errors import ConfigError
from ..geometry import boxes_to_original
from ..models import freeze_unused_by_features
from ..visualize import draw_boxes
from .base import Prediction, VisionTask
from .registry import register_task


class Objects(NamedTuple):
    """The images of a batch that hold an object (``index``), with that object's label and xyxy box."""

    index: Tensor
    labels: Tensor
    boxes: Tensor


def largest_objects(targets: list[dict[str, Tensor]], device: torch.device) -> Objects:
    """Each image's largest box and its label; images without a box are left out (module docstring)."""
    present = [i for i, target in enumerate(targets) if len(target["boxes"])]
    labels = torch.zeros(len(present), dtype=torch.int64, device=device)
    boxes = torch.zeros(len(present), 4, device=device)
    for row, i in enumerate(present):
        k = int(box_area(targets[i]["boxes"]).argmax())
        labels[row], boxes[row] = targets[i]["labels"][k], targets[i]["boxes"][k]
    return Objects(torch.tensor(present, dtype=torch.int64, device=device), labels, boxes)


def encode_boxes(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """xyxy pixels of an H×W input → (cx / W, cy / H, √(w / W), √(h / H)), the box head's targets (Géron ch. 14)."""
    scale = boxes.new_tensor([size[1], size[0]])
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 / scale
    extent = ((boxes[:, 2:] - boxes[:, :2]) / scale).clamp(min=0).sqrt()
    return torch.cat([centre, extent], dim=1)


def decode_boxes(encoded: Tensor, size: tuple[int, int]) -> Tensor:
    """The inverse of :func:`encode_boxes`: box head outputs → xyxy pixels of an H×W input."""
    scale = encoded.new_tensor([size[1], size[0]])
    centre, half = encoded[:, :2] * scale, encoded[:, 2:].square() * scale / 2
    return torch.cat([centre - half, centre + half], dim=1)


class LocalizationNet(nn.Module):
    """Backbone → global average pooling of the last stage → class head (Linear → C) beside box head (Linear → 4)."""

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        channels = backbone.feature_info[-1]["num_chs"]
        self.backbone = backbone
        self.classifier = nn.Linear(channels, num_classes)
        self.box_head = nn.Linear(channels, 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Class logits [N, C] and box encodings [N, 4] in (0, 1): cx, cy, √w, √h."""
        pooled = self.backbone.forward_features(x)[-1].mean(dim=(2, 3))
        return self.classifier(pooled), self.box_head(pooled).sigmoid()


def _metrics(num_classes: int) -> MetricCollection:
    """acc1, iou and loc_acc, each updated on its own (no compute groups)."""
    return MetricCollection(
        {
            "acc1": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
            "iou": MeanMetric(),
            "loc_acc": MeanMetric(),
        },
        compute_groups=False,
    )


@register_task(name="localization")
class ObjectLocalizer(VisionTask):
    """Classification + localisation over a backbone given by name (rebuilt from hparams by ``load_from_checkpoint``).

    ``box_loss_weight`` is λ_box of the loss; ``iou_threshold`` the IoU a box needs to count in ``loc_acc``.
    """

    monitor = "val/loc_acc"
    prediction_columns = ("class", "probability", "x1", "y1", "x2", "y2")
    output_names = ("logits", "boxes")
    monitor_mode = "max"

    def __init__(
        self,
        model: str = "resnet18",
        num_classes: int = 3,
        in_chans: int = 3,
        *,
        box_loss_weight: float = 5.0,
        iou_threshold: float = 0.5,
        **options: Any,
    ) -> None:
        if box_loss_weight < 0:
            raise ConfigError(f"task.box_loss_weight must be >= 0; got {box_loss_weight}")
        if not 0.0 < iou_threshold <= 1.0:
            raise ConfigError(f"task.iou_threshold must be in (0, 1]; got {iou_threshold}")
        super().__init__(model, num_classes, in_chans, **options)
        backbone = self.create_backbone()
        freeze_unused_by_features(backbone, in_chans)
        self.model = LocalizationNet(backbone, num_classes)
        self.train_acc1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_metrics = _metrics(num_classes)
        self.test_metrics = _metrics(num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.model(x)

    def pretrained_module(self) -> nn.Module:
        return self.model.backbone

    def loss(
        self, logits: Tensor, boxes: Tensor, objects: Objects, size: tuple[int, int]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(total, class, box) losses of a batch's outputs against its ``objects`` (inputs of ``size`` H, W)."""
        loss_cls = F.cross_entropy(logits[objects.index], objects.labels)
        loss_box = F.mse_loss(boxes[objects.index], encode_boxes(objects.boxes, size))
        return loss_cls + self.hparams.box_loss_weight * loss_box, loss_cls, loss_box

    def training_step(self, batch: tuple[Tensor, list[dict[str, Tensor]]], batch_idx: int) -> Tensor:
        images, targets = batch
        logits, boxes = self(images)
        objects = largest_objects(targets, images.device)
        if not len(objects.index):  # nothing to learn; a zero still tied to the graph keeps every process in step
            return logits.sum() * 0 + boxes.sum() * 0
        loss, loss_cls, loss_box = self.loss(logits, boxes, objects, tuple(images.shape[-2:]))
        count = len(objects.index)
        self.log_dict({"train/loss_cls": loss_cls, "train/loss_box": loss_box}, batch_size=count)
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=count)
        self.train_acc1.update(logits[objects.index].detach(), objects.labels)
        self.log("train/acc1", self.train_acc1, on_step=False, on_epoch=True)
        return loss

    def _evaluate(self, batch: tuple[Tensor, list[dict[str, Tensor]]], stage: str, metrics: MetricCollection) -> None:
        images, targets = batch
        logits, boxes = self(images)
        objects = largest_objects(targets, images.device)
        if not len(objects.index):
            return
        size = tuple(images.shape[-2:])
        loss, loss_cls, loss_box = self.loss(logits, boxes, objects, size)
        count = len(objects.index)
        losses = {f"{stage}/loss": loss, f"{stage}/loss_cls": loss_cls, f"{stage}/loss_box": loss_box}
        self.log_dict(losses, on_epoch=True, sync_dist=True, batch_size=count)
        logits = logits[objects.index]
        iou = box_iou(decode_boxes(boxes[objects.index], size), objects.boxes).diagonal()
        correct = (logits.argmax(dim=1) == objects.labels) & (iou >= self.hparams.iou_threshold)
        metrics["acc1"].update(logits, objects.labels)
        metrics["iou"].update(iou)
        metrics["loc_acc"].update(correct.float())
        for name, metric in metrics.items():
            self.log(f"{stage}/{name}", metric, on_step=False, on_epoch=True, prog_bar=name == "loc_acc")

    def validation_step(self, batch: tuple[Tensor, list[dict[str, Tensor]]], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: tuple[Tensor, list[dict[str, Tensor]]], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_metrics)

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        """Per image: ``boxes`` [N, 4] xyxy input pixels, ``labels`` [N] and ``scores`` [N] (class probability)."""
        images = batch[0] if isinstance(batch, list | tuple) else batch
        logits, boxes = self(images)
        scores, labels = logits.softmax(dim=1).max(dim=1)
        return {"boxes": decode_boxes(boxes, tuple(images.shape[-2:])), "labels": labels, "scores": scores}

    def predict_images(
        self, images: Tensor, originals: Sequence[np.ndarray], image_ids: Sequence[int]
    ) -> list[Prediction]:
        """Per image: its class, the class's probability and its box in original pixels, and the image with the box
        drawn."""
        found = self.predict_step(images, 0)
        predictions = []
        for k, original in enumerate(originals):
            height, width = original.shape[:2]
            box = boxes_to_original(found["boxes"][k : k + 1], height, width, images.shape[-1])
            label, score = found["labels"][k : k + 1], found["scores"][k : k + 1]
            image = torch.from_numpy(original).permute(2, 0, 1)
            drawing = draw_boxes(image, box, label, score, self.class_names).permute(1, 2, 0).numpy()
            cells = [self.class_names[int(label)], f"{float(score):.4f}", *(f"{v:.1f}" for v in box[0].tolist())]
            predictions.append(Prediction(row=cells, drawing=drawing))
        return predictions
