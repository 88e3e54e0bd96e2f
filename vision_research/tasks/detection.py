"""Object detection: a YOLO-style detector on any backbone (Redmon et al. 2016; anchors: Redmon & Farhadi 2017/2018).

``head.type``:

- ``v1`` — the paper's S×S grid on one backbone stage (``head.stage``, default the last): B boxes with
  confidences and one class distribution per cell, trained with the multi-part sum-squared loss
  (``losses/yolo_loss.py``: λ_coord = 5, λ_noobj = 0.5 by default);
- ``anchors`` — YOLOv2/v3 anchor boxes on one or more stages (``head.strides``, e.g. [8, 16, 32]): sigmoid
  centre offsets, log-space sizes relative to anchors that are, by default, k-means clusters (d = 1 − IoU)
  of the training boxes, per-box classes.

Each loss term is logged on its own (``train/loss_xy``, ``train/loss_wh``, ``train/loss_obj``,
``train/loss_noobj``, ``train/loss_cls``). Evaluation decodes, runs per-class NMS
(``torchvision.ops.batched_nms``; score ≥ 0.001, IoU 0.5, 100 detections per image by default), maps the
boxes back from the letterboxed input to each original image and scores them with COCOeval against the ground
truth the targets carry (every object of the annotation files, as their COCO instances dict holds it;
``metrics/detection.py``: pycocotools or faster-coco-eval, one result per image under DDP): ``val/map``
(0.50:0.95), ``val/map_50`` (primary), ``val/map_75`` and the size / recall figures. The images scored are
those evaluated, so a bare DataLoader of the detection datasets evaluates too. Every
``log_images_every_n_epochs`` epochs, predictions drawn on the first validation images go to TensorBoard.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError, DataError
from ..geometry import boxes_to_original, letterbox_geometry
from ..heads.stages import select_stages
from ..heads.yolo_head import MultiScaleYoloHead, YoloV1Head, decode_anchors, decode_v1, kmeans_anchors, postprocess
from ..losses.yolo_loss import YoloAnchorLoss, YoloV1Loss
from ..metrics.detection import COCO_STATS_NAMES, CocoMeanAveragePrecision, detections_to_coco
from ..models import freeze_unused_by_features
from ..registry import keyword_defaults
from ..visualize import denormalize, draw_boxes
from .base import Prediction, VisionTask
from .contract import AnnotatedData
from .registry import register_task

HEAD_TYPES = ("v1", "anchors")
# task.head's keys: the task's own (which head, which stages or strides, the anchors or how many per scale to cluster)
# and the head's options; task.postprocess's: the options of postprocess. Read from the signatures.
V1_HEAD_KEYS = {"type", "stage", *keyword_defaults(YoloV1Head)}
ANCHOR_HEAD_KEYS = {"type", "strides", "anchors", "anchors_per_scale", *keyword_defaults(MultiScaleYoloHead)}
POSTPROCESS_DEFAULTS = keyword_defaults(postprocess)
# Options of the anchor loss that the v1 loss does not have (configs/task/detection.yaml holds them for both heads).
ANCHOR_LOSS_DEFAULTS = {
    k: v for k, v in keyword_defaults(YoloAnchorLoss).items() if k not in keyword_defaults(YoloV1Loss)
}


def v1_loss_options(loss: dict[str, Any] | None) -> dict[str, Any]:
    """``task.loss`` for the v1 grid: the anchor-only options dropped while they keep their defaults (the v1 grid
    keeps the paper's loss), a one-line error when one is set."""
    options = dict(loss or {})
    for key, default in ANCHOR_LOSS_DEFAULTS.items():
        value = options.pop(key, default)
        if value != default:
            raise ConfigError(f"task.loss.{key}={value} is an option of the anchor head's loss: use task/head=anchors")
    return options


def kmeans_anchors_from_data(datamodule: Any, image_size: int, strides: Sequence[int], per_scale: int) -> list:
    """YOLOv2's dimension clusters of the training boxes (letterboxed input pixels), smallest at the finest stride."""
    sizes = []
    for record in datamodule.annotations("train").images:
        scale = letterbox_geometry(record.height, record.width, image_size)[0]
        sizes += [((x2 - x1) * scale, (y2 - y1) * scale) for x1, y1, x2, y2 in (o.box for o in record.objects)]
    clusters = kmeans_anchors(torch.tensor(sizes, dtype=torch.float32), per_scale * len(strides))
    ordered = sorted(strides)
    groups = [clusters[i * per_scale : (i + 1) * per_scale] for i in range(len(strides))]
    by_stride = dict(zip(ordered, groups, strict=True))
    return [[[round(float(w), 2), round(float(h), 2)] for w, h in by_stride[s]] for s in strides]


def decode_detections(
    raw: Tensor | Sequence[Tensor],
    image_size: int,
    num_boxes: int = 2,
    anchors: Sequence[Tensor | Sequence[Sequence[float]]] | None = None,
    strides: Sequence[int] | None = None,
    **postprocess_options: Any,
) -> list[dict[str, Tensor]]:
    """Per-image detections ``{"boxes" xyxy input pixels, "scores", "labels"}`` from a YOLO head's raw outputs:
    ``decode_v1`` of the v1 grid [N, S, S, 5B + C] (``anchors`` None) or ``decode_anchors`` of one
    [N, A, h, w, 5 + C] tensor per stride, then ``postprocess`` (per-class NMS) with ``postprocess_options``.
    ``YoloDetector.decoding()`` gives the other arguments; a standalone function so that exported models'
    outputs are decoded by the same code."""
    if anchors is None:
        boxes, scores = decode_v1(raw, image_size, num_boxes)
    else:
        boxes, scores = decode_anchors(raw, anchors, strides)
    return postprocess(boxes, scores, image_size, **postprocess_options)


@register_task(name="detection")
class YoloDetector(VisionTask):
    """YOLO over a backbone given by name; every option is a plain value so that checkpoints rebuild it."""

    monitor = "val/map_50"

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
        log_images_every_n_epochs: int = 5,
        num_images_to_log: int = 4,
        **options: Any,
    ) -> None:
        if category_ids is not None and len(category_ids) != num_classes:
            raise ConfigError(f"{len(category_ids)} category ids for {num_classes} classes")
        super().__init__(model, num_classes, in_chans, **options)
        head = {"type": "v1", **(head or {})}
        if head["type"] not in HEAD_TYPES:
            raise ConfigError(f"task.head.type must be one of {', '.join(HEAD_TYPES)}; got '{head['type']}'")
        self.postprocess_options = {**POSTPROCESS_DEFAULTS, **(postprocess or {})}
        unknown = set(self.postprocess_options) - set(POSTPROCESS_DEFAULTS)
        if unknown:
            raise ConfigError(
                f"task.postprocess has no option {sorted(unknown)}; options: {sorted(POSTPROCESS_DEFAULTS)}"
            )
        self.backbone = self.create_backbone()
        info = self.backbone.feature_info
        if head["type"] == "v1":
            self._check_keys(head, V1_HEAD_KEYS)
            options = {k: v for k, v in head.items() if k not in ("type", "stage")}
            self.stages = [head.get("stage", -1) % len(info)]
            self.head = YoloV1Head(info[self.stages[0]]["num_chs"], num_classes, **options)
            self.criterion = YoloV1Loss(num_classes, self.head.grid_size, self.head.num_boxes, **v1_loss_options(loss))
        else:
            self._check_keys(head, ANCHOR_HEAD_KEYS)
            strides = list(head.get("strides", [32]))
            anchors = head.get("anchors")
            if not isinstance(anchors, list | tuple) or len(anchors) != len(strides):
                raise ConfigError(
                    f"task.head.anchors must hold one list of [w, h] per stride {strides} (or 'kmeans', resolved "
                    f"from the training boxes when the run starts); got {anchors!r}"
                )
            self.stages = select_stages(info, strides)
            options = {k: v for k, v in head.items() if k in keyword_defaults(MultiScaleYoloHead)}
            self.head = MultiScaleYoloHead([info[i] for i in self.stages], num_classes, anchors, **options)
            self.criterion = YoloAnchorLoss(num_classes, anchors, strides, **(loss or {}))
        freeze_unused_by_features(self.backbone, in_chans, self.stages)
        self.category_ids = list(category_ids) if category_ids is not None else list(range(1, num_classes + 1))
        for stage in ("val", "test"):
            metric = CocoMeanAveragePrecision(
                None, self.category_ids, coco_backend, max_detections=self.postprocess_options["max_detections"]
            )
            setattr(self, f"{stage}_metrics", metric)

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

    # ------------------------------------------------------------------ model
    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        """Raw head outputs: [N, S, S, 5B + C] (v1) or one [N, A, h, w, 5 + C] per scale (anchors)."""
        features = self.backbone.forward_features(x)
        if isinstance(self.head, YoloV1Head):
            return self.head(features[self.stages[0]])
        return self.head([features[i] for i in self.stages])

    def compute_loss(self, raw: Tensor | list[Tensor], targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        if isinstance(self.head, YoloV1Head):
            return self.criterion(raw, targets, self.hparams.image_size)
        return self.criterion(raw, targets)

    def decoding(self) -> dict[str, Any]:
        """The keyword arguments of :func:`decode_detections` for this detector (an export's sidecar holds them):
        the input size, the head's geometry (v1: ``num_boxes``; anchors: ``anchors``, one [A, 2] tensor per
        stride, and ``strides``) and the ``postprocess`` options."""
        options = {"image_size": self.hparams.image_size, **self.postprocess_options}
        if isinstance(self.head, YoloV1Head):
            return {**options, "num_boxes": self.head.num_boxes}
        return {**options, "anchors": self.head.anchors, "strides": self.head.strides}

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
        size = self.hparams.image_size
        in_original = [
            {**d, "boxes": boxes_to_original(d["boxes"], int(t["orig_size"][0]), int(t["orig_size"][1]), size)}
            for d, t in zip(detections, targets, strict=True)
        ]
        if any("ground_truth" not in t for t in targets):
            raise DataError(
                "a detection target has no 'ground_truth' rows to score against (vision_research.coco."
                "ground_truth_rows); the detection datasets (data.detection.AnnotatedImageDataset) give them"
            )
        metric = getattr(self, f"{stage}_metrics")
        metric.update(in_original, [int(t["image_id"]) for t in targets], [t["ground_truth"] for t in targets])
        return detections

    def _log_coco(self, stage: str) -> None:
        metric = getattr(self, f"{stage}_metrics")
        scores = metric.compute()
        metric.reset()
        self.log(f"{stage}/map_50", scores["map_50"].float(), prog_bar=True)
        self.log_dict({f"{stage}/{k}": scores[k].float() for k in COCO_STATS_NAMES if k != "map_50"})

    def validation_step(self, batch: tuple[Tensor, list[dict]], batch_idx: int) -> None:
        detections = self._evaluate(batch, "val")
        if batch_idx == 0 and self._logging_images():
            self._log_drawings(batch[0], detections)

    def on_validation_epoch_end(self) -> None:
        self._log_coco("val")

    def test_step(self, batch: tuple[Tensor, list[dict]], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_coco("test")

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
        count = self.hparams.num_images_to_log
        pictures = denormalize(images[:count], *self.input_stats)
        drawn = torch.cat([self.draw(p, d) for p, d in zip(pictures, detections[:count], strict=True)], dim=2)
        self.logger.experiment.add_image("val/predictions", drawn, self.global_step)
