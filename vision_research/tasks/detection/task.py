"""Object detection: a YOLO-style detector on any backbone (Redmon et al. 2016; anchors: Redmon & Farhadi 2017/2018).

``head.type``:

- ``v1`` — the paper's S×S grid on one backbone stage (``head.stage``, default the last): B boxes with
  confidences and one class distribution per cell, trained with the multi-part sum-squared loss
  (``loss.py``: λ_coord = 5, λ_noobj = 0.5 by default);
- ``anchors`` — YOLOv2/v3 anchor boxes on one or more stages (``head.strides``, e.g. [8, 16, 32]): sigmoid
  centre offsets, log-space sizes relative to anchors that are, by default, k-means clusters (d = 1 − IoU)
  of the training boxes (``anchors.py``), per-box classes.

Each loss term is logged on its own (``train/loss_xy``, ``train/loss_wh``, ``train/loss_obj``,
``train/loss_noobj``, ``train/loss_cls``). Evaluation decodes (``box_coding.py``), runs per-class NMS
(``torchvision.ops.batched_nms``; score ≥ 0.001, IoU 0.5, 100 detections per image by default), maps the
boxes back from the letterboxed input to each original image and scores them with COCOeval against the ground
truth the targets carry (every object of the annotation files, as their COCO instances dict holds it;
``metrics/coco.py``: pycocotools or faster-coco-eval, one result per image under DDP): ``val/map``
(0.50:0.95), ``val/map_50`` (primary), ``val/map_75`` and the size / recall figures. ``use_metric("voc07")``
(or ``"voc12"``) scores with Pascal VOC mAP instead (``metrics/voc.py``). The images scored are those evaluated,
so a bare DataLoader of the detection datasets evaluates too. Every ``log_images_every_n_epochs`` epochs,
predictions drawn on the first validation images go to TensorBoard.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import Metric

from ...errors import ConfigError, DataError
from ...geometry import boxes_to_original
from ...metrics.coco import COCO_STATS_NAMES, CocoMeanAveragePrecision, detections_to_coco
from ...metrics.voc import VocMeanAveragePrecision
from ...models import freeze_unused_by_features
from ...registry import keyword_defaults
from ...visualize import draw_boxes
from ..base import ImageLoggingTask, Prediction
from ..contract import AnnotatedData
from ..registry import register_task
from .anchors import kmeans_anchors_from_data
from .box_coding import decode_detections, postprocess
from .heads import MultiScaleYoloHead, YoloV1Head

HEADS: dict[str, type[YoloV1Head] | type[MultiScaleYoloHead]] = {"v1": YoloV1Head, "anchors": MultiScaleYoloHead}
# task.head's keys: "type" and the options of the head's builder (which stage or strides, the anchors or how many per
# scale to cluster) and of the head; task.postprocess's: the options of postprocess. Read from the signatures.
HEAD_KEYS = {
    name: {"type", *keyword_defaults(head.from_backbone), *keyword_defaults(head)} for name, head in HEADS.items()
}
POSTPROCESS_DEFAULTS = keyword_defaults(postprocess)
# use_metric's VOC names (mAP at IoU 0.5) and whether each uses VOC2007's 11-point rule, else the area rule of 2010+.
VOC_METRICS = {"voc07": True, "voc12": False}


@register_task(name="detection")
class YoloDetector(ImageLoggingTask):
    """YOLO over a backbone given by name; every option is a plain value so that checkpoints rebuild it."""

    monitor = "val/map_50"
    evaluation_metrics = ("coco", *VOC_METRICS)

    def __init__(
        self,
        model: str = "resnet18",
        num_classes: int = 20,
        in_chans: int = 3,
        *,
        image_size: int = 416,
        head: dict[str, Any] | None = None,
        loss: dict[str, Any] | None = None,
        postprocess: dict[str, Any] | None = None,
        coco_backend: str = "auto",
        category_ids: Sequence[int] | None = None,
        **options: Any,
    ) -> None:
        if category_ids is not None and len(category_ids) != num_classes:
            raise ConfigError(f"{len(category_ids)} category ids for {num_classes} classes")
        super().__init__(model=model, num_classes=num_classes, in_chans=in_chans, **options)
        head = {"type": "v1", **(head or {})}
        if head["type"] not in HEADS:
            raise ConfigError(f"task.head.type must be one of {', '.join(HEADS)}; got '{head['type']}'")
        self.postprocess_options = {**POSTPROCESS_DEFAULTS, **(postprocess or {})}
        unknown = set(self.postprocess_options) - set(POSTPROCESS_DEFAULTS)
        if unknown:
            raise ConfigError(
                f"task.postprocess has no option {sorted(unknown)}; options: {sorted(POSTPROCESS_DEFAULTS)}"
            )
        self.backbone = self.create_backbone()
        self._check_keys(head, HEAD_KEYS[head["type"]])
        head_options = {k: v for k, v in head.items() if k != "type"}
        self.head = HEADS[head["type"]].from_backbone(self.backbone.feature_info, num_classes, **head_options)
        self.criterion = self.head.build_loss(image_size, loss)
        freeze_unused_by_features(self.backbone, in_chans, self.head.stages)
        self.category_ids = list(category_ids) if category_ids is not None else list(range(1, num_classes + 1))
        self.use_metric("coco")

    @staticmethod
    def _check_keys(head: dict[str, Any], allowed: set[str]) -> None:
        unknown = set(head) - allowed
        if unknown:
            raise ConfigError(f"task.head ({head['type']}) has no option {sorted(unknown)}; options: {sorted(allowed)}")

    @classmethod
    def options_from_data(cls, options: dict[str, Any], datamodule: AnnotatedData) -> dict[str, Any]:
        """The ``TaskData`` facts, the data's COCO category ids and, when ``anchors: kmeans``, the k-means anchors of
        its boxes."""
        options = super().options_from_data(options, datamodule)
        options["category_ids"] = list(datamodule.annotations("train").category_ids)
        head = dict(options.get("head") or {})
        if head.get("type") == "anchors" and head.get("anchors", "kmeans") == "kmeans":
            strides = list(head.get("strides", [32]))
            per_scale = int(head.get("anchors_per_scale", 3))
            head["anchors"] = kmeans_anchors_from_data(datamodule, datamodule.image_size, strides, per_scale)
            options["head"] = head
        return options

    def pretrained_module(self) -> nn.Module:
        return self.backbone

    def use_metric(self, name: str) -> None:
        """Score validation and test with COCO mAP (``coco``, the default: ``{stage}/map_50``, ``{stage}/map`` ...) or
        Pascal VOC mAP at IoU 0.5 with difficult objects ignored (``voc07``: VOC2007's 11-point rule; ``voc12``: the
        area rule of VOC2010 onwards), logged as ``{stage}/voc07_map`` / ``{stage}/voc12_map``."""
        if name not in self.evaluation_metrics:
            super().use_metric(name)
        self.metric_name = name
        for stage in ("val", "test"):
            setattr(self, f"{stage}_metrics", self._new_metric(name))

    def _new_metric(self, name: str) -> Metric:
        if name in VOC_METRICS:
            metric = VocMeanAveragePrecision(self.hparams.num_classes, use_07_metric=VOC_METRICS[name])
        else:
            max_detections = self.postprocess_options["max_detections"]
            metric = CocoMeanAveragePrecision(
                None, self.category_ids, self.hparams.coco_backend, max_detections=max_detections
            )
        return metric.to(self.device)

    # ------------------------------------------------------------------ model
    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        """Raw head outputs: [N, S, S, 5B + C] (v1) or one [N, A, h, w, 5 + C] per scale (anchors)."""
        return self.head.read(self.backbone.forward_features(x))

    def compute_loss(self, raw: Tensor | list[Tensor], targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        return self.criterion(raw, targets)

    def decoding(self) -> dict[str, Any]:
        """The keyword arguments of :func:`decode_detections` for this detector (an export's sidecar holds them):
        the input size, the ``postprocess`` options and the head's geometry (v1: ``num_boxes``; anchors:
        ``anchors``, one [A, 2] tensor per stride, and ``strides``)."""
        return {"image_size": self.hparams.image_size, **self.postprocess_options, **self.head.geometry()}

    def detect(self, raw: Tensor | list[Tensor]) -> list[dict[str, Tensor]]:
        """Decoded, NMS-filtered detections per image in input pixels."""
        return decode_detections(raw, **self.decoding())

    # ------------------------------------------------------------------ export
    def export_output_names(self, count: int) -> list[str]:
        """``raw`` (v1), or ``raw_stride<s>`` per scale (anchors)."""
        strides = self.decoding().get("strides")
        return [f"raw_stride{s}" for s in strides] if strides else ["raw"]

    def export_facts(self) -> dict[str, Any]:
        """The COCO ids of the classes, in order, and ``postprocess``: the keyword arguments of
        :func:`decode_detections` (the anchors as the checkpoint holds them, fp32)."""
        return {"category_ids": list(self.category_ids), "postprocess": self.decoding()}

    @classmethod
    def postprocess_exported(cls, outputs: Sequence[Tensor], facts: Mapping[str, Any]) -> list[dict[str, Tensor]]:
        """Per-image detections from an exported detector's raw outputs, decoded and NMS-filtered by
        :func:`decode_detections` with the sidecar's ``postprocess`` (NMS stays out of the graph: its candidate
        counts depend on the image, which a trace would freeze)."""
        decoding = facts.get("postprocess")
        if decoding is None:
            raise DataError("the sidecar of an exported detector has no 'postprocess' (the decoding's settings)")
        raw = [torch.as_tensor(out) for out in outputs]
        return decode_detections(raw if decoding.get("anchors") else raw[0], **decoding)

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: tuple[Tensor, list[dict]], batch_idx: int) -> Tensor:
        images, targets = batch
        losses = self.compute_loss(self(images), targets)
        self.log_dict({f"train/{k}": v for k, v in losses.items() if k != "loss"}, batch_size=len(images))
        self.log("train/loss", losses["loss"], on_step=True, on_epoch=False, prog_bar=True, batch_size=len(images))
        return losses["loss"]

    def _evaluate(self, batch: tuple[Tensor, list[dict]], stage: str) -> list[dict[str, Tensor]]:
        images, targets = batch
        raw = self(images)
        losses = self.compute_loss(raw, targets)
        self.log(f"{stage}/loss", losses["loss"], on_epoch=True, sync_dist=True, batch_size=len(images))
        detections = self.detect(raw)
        image_ids = [int(t["image_id"]) for t in targets]
        metric = getattr(self, f"{stage}_metrics")
        if self.metric_name in VOC_METRICS:  # boxes in input pixels on both sides: the letterbox keeps every IoU
            metric.update(detections, image_ids, targets)
            return detections
        size = self.hparams.image_size
        in_original = [
            {**d, "boxes": boxes_to_original(d["boxes"], int(t["orig_size"][0]), int(t["orig_size"][1]), size)}
            for d, t in zip(detections, targets, strict=True)
        ]
        if any("ground_truth" not in t for t in targets):
            raise DataError(
                "a detection target has no 'ground_truth' rows to score against (vision_research.coco."
                "ground_truth_rows); the detection datasets (data.annotated.AnnotatedImageDataset) give them"
            )
        metric.update(in_original, image_ids, [t["ground_truth"] for t in targets])
        return detections

    def _log_scores(self, stage: str) -> None:
        metric = getattr(self, f"{stage}_metrics")
        scores = metric.compute()
        metric.reset()
        if self.metric_name in VOC_METRICS:
            self.log(f"{stage}/{self.metric_name}_map", scores["map"].float(), prog_bar=True)
            return
        self.log(f"{stage}/map_50", scores["map_50"].float(), prog_bar=True)
        self.log_dict({f"{stage}/{k}": scores[k].float() for k in COCO_STATS_NAMES if k != "map_50"})

    def validation_step(self, batch: tuple[Tensor, list[dict]], batch_idx: int) -> None:
        detections = self._evaluate(batch, "val")
        if batch_idx == 0 and self._logging_images():
            self._log_drawings(batch[0], detections)

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val")

    def test_step(self, batch: tuple[Tensor, list[dict]], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_scores("test")

    def predict_step(self, batch: Any, batch_idx: int) -> list[dict[str, Tensor]]:
        images = batch[0] if isinstance(batch, list | tuple) else batch
        return self.detect(self(images))

    def predict_images(
        self, images: Tensor, originals: Sequence[np.ndarray], image_ids: Sequence[int]
    ) -> list[Prediction]:
        """Per image: its detections as COCO results in the original frame, and the image with them drawn."""
        predictions = []
        for image_id, found, original in zip(image_ids, self.detect(self(images)), originals, strict=True):
            height, width = original.shape[:2]
            found = {**found, "boxes": boxes_to_original(found["boxes"], height, width, self.hparams.image_size)}
            results = detections_to_coco(
                [image_id], [found["boxes"]], [found["scores"]], [found["labels"]], self.category_ids
            )
            drawing = self.draw(torch.from_numpy(original).permute(2, 0, 1), found)
            predictions.append(Prediction(results=results, drawing=drawing.permute(1, 2, 0).numpy()))
        return predictions

    # ------------------------------------------------------------------ pictures
    def draw(self, image: Tensor, detection: dict[str, Tensor], min_score: float = 0.3) -> Tensor:
        """``image`` (uint8 [3, H, W]) with the detections scoring at least ``min_score`` drawn on it."""
        boxes, labels, scores = detection["boxes"], detection["labels"], detection["scores"]
        return draw_boxes(image, boxes, labels, scores, self.class_names, min_score)

    def _log_drawings(self, images: Tensor, detections: list[dict[str, Tensor]]) -> None:
        pictures = self._pictures(images)
        drawn = [self.draw(p, d) for p, d in zip(pictures, detections[: len(pictures)], strict=True)]
        self._log_picture(torch.cat(drawn, dim=2))
