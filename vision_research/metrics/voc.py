"""Pascal VOC detection AP (Everingham et al. 2010; the devkit's ``VOCevaldet`` / ``VOCap``): per-class AP at one IoU
threshold with ``difficult`` objects ignored, by the VOC2007 11-point rule or the 2010+ area rule.

``voc_evaluate`` scores per-image predictions against per-image ground truth (xyxy boxes in one frame), and
``VocMeanAveragePrecision`` collects both over an evaluation run, across processes under DDP.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchvision.ops import box_iou

from ..errors import ConfigError, DataError
from .samples import cat_state, first_occurrences


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool) -> float:
    """Average precision of one precision/recall curve (points in detection-rank order), as the VOC devkit.

    Everingham et al. 2010; devkit ``VOCevaldet`` (VOC2007: mean over recall thresholds 0, 0.1, ..., 1 of the
    best precision at recall ≥ t, 0 where none) and ``VOCap`` (2010+: area under the precision envelope,
    precision made monotone from the right, between recall 0 and 1). The 11 thresholds are the doubles
    nearest j / 10, so a recall of exactly 3/5 reaches 0.6; the Python ports' ``np.arange(0, 1.1, 0.1)``
    makes 0.3, 0.6 and 0.7 one ulp too high and misses such recalls.
    """
    recall, precision = np.asarray(recall, dtype=np.float64), np.asarray(precision, dtype=np.float64)
    if recall.ndim != 1 or recall.shape != precision.shape:
        raise DataError(f"recall {recall.shape} and precision {precision.shape} must be 1-D and of equal length")
    if use_07_metric:
        thresholds = np.arange(11) / 10
        reached = recall[None, :] >= thresholds[:, None]
        return float(np.where(reached, precision[None, :], 0.0).max(axis=1, initial=0.0).mean())
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.maximum.accumulate(np.concatenate(([0.0], precision, [0.0]))[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _check_voc_options(num_classes: int, iou_threshold: float) -> None:
    if num_classes < 1:
        raise ConfigError(f"num_classes must be at least 1, got {num_classes}")
    if not 0.0 < iou_threshold <= 1.0:
        raise ConfigError(f"iou_threshold must be in (0, 1], got {iou_threshold}")


def _check_voc_inputs(
    ground_truths: Sequence[dict], predictions: Sequence[dict], num_classes: int, iou_threshold: float
) -> None:
    _check_voc_options(num_classes, iou_threshold)
    if len(ground_truths) != len(predictions):
        raise DataError(f"{len(ground_truths)} ground truths but {len(predictions)} predictions; expected one each")
    for kind, items in (("ground truth", ground_truths), ("prediction", predictions)):
        for k, item in enumerate(items):
            labels = item["labels"]
            bad = labels[(labels < 0) | (labels >= num_classes)]
            if len(bad):
                raise DataError(f"{kind} {k} has label {int(bad[0])}, outside 0..{num_classes - 1}")


def _best_matches(ground_truths: Sequence[dict], predictions: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Per prediction row (images concatenated): the IoU of the best same-class ground truth and its global index.

    -1 and index 0 where the image has no ground truth of that class. The index is the first of equal bests,
    as the devkit's ``ov > ovmax`` scan.
    """
    best_iou, best_index, offset = [], [], 0
    for target, pred in zip(ground_truths, predictions, strict=True):
        gt_boxes = target["boxes"].to("cpu", torch.float64).reshape(-1, 4)
        iou = box_iou(pred["boxes"].to("cpu", torch.float64).reshape(-1, 4), gt_boxes)
        iou[pred["labels"].cpu().reshape(-1, 1) != target["labels"].cpu().reshape(1, -1)] = -1.0
        iou = torch.cat([iou, torch.full((len(iou), 1), -1.0, dtype=iou.dtype)], dim=1)  # a "no match" column
        value, index = iou.max(dim=1)
        best_iou.append(value)
        best_index.append(torch.where(value >= 0, index + offset, 0))
        offset += len(gt_boxes)
    return torch.cat(best_iou).numpy(), torch.cat(best_index).numpy()


def _difficult(target: dict) -> Tensor:
    """The ``difficult`` flags of a ground truth as a CPU bool vector (all False when absent)."""
    if "difficult" not in target:
        return torch.zeros(len(target["labels"]), dtype=torch.bool)
    return torch.as_tensor(target["difficult"]).reshape(-1).cpu().bool()


def _class_curve(
    scores: np.ndarray, best_iou: np.ndarray, best_gt: np.ndarray, difficult: np.ndarray, iou_threshold: float
) -> np.ndarray:
    """True-positive flags in score order for one class's detections, those ignored (on a difficult box) dropped.

    Devkit ``VOCevaldet``: a detection whose best ground truth overlaps by ≥ the threshold is ignored if that
    box is difficult, a true positive if it is the box's first (highest-scored) match, else a false positive;
    any other detection is a false positive. Score ties keep image order (a stable sort, as MATLAB's).
    """
    order = np.argsort(-scores, kind="stable")
    best_iou, best_gt = best_iou[order], best_gt[order]
    hit = best_iou >= iou_threshold
    ignored = np.zeros_like(hit)
    ignored[hit] = difficult[best_gt[hit]]
    candidate = np.flatnonzero(hit & ~ignored)
    _, first = np.unique(best_gt[candidate], return_index=True)
    true_positive = np.zeros_like(hit)
    true_positive[candidate[first]] = True
    return true_positive[~ignored]


def voc_evaluate(
    ground_truths: Sequence[dict],
    predictions: Sequence[dict],
    num_classes: int,
    iou_threshold: float = 0.5,
    use_07_metric: bool = False,
) -> dict[str, Any]:
    """Pascal VOC detection AP per class and its mean (Everingham et al. 2010; devkit ``VOCevaldet``).

    ``ground_truths[i]``: ``boxes`` [G, 4] xyxy, ``labels`` [G], optional ``difficult`` [G] bool; ``predictions[i]``:
    ``boxes`` [N, 4], ``scores`` [N], ``labels`` [N] of the same image. Difficult boxes are left out of the
    number of positives and a detection matching one counts neither way; each box is matched at most once.
    IoU is the plain continuous-coordinate one (``torchvision.ops.box_iou``), not the devkit's +1-pixel
    widths of 1-based inclusive corners, and a match needs IoU ≥ ``iou_threshold`` (the devkit's ``>=``).
    Returns ``map`` (mean over classes with non-difficult ground truth; NaN if none), ``ap`` per class (NaN
    without ground truth) and ``num_positives`` per class.
    """
    _check_voc_inputs(ground_truths, predictions, num_classes, iou_threshold)
    if not ground_truths:  # no image scored: no ground truth, so no AP, as for a class without ground truth
        return {"map": float("nan"), "ap": [float("nan")] * num_classes, "num_positives": [0] * num_classes}
    gt_labels = torch.cat([t["labels"].reshape(-1).cpu() for t in ground_truths]).numpy()
    difficult = torch.cat([_difficult(t) for t in ground_truths]).numpy()
    scores = torch.cat([p["scores"].reshape(-1).cpu().to(torch.float64) for p in predictions]).numpy()
    labels = torch.cat([p["labels"].reshape(-1).cpu() for p in predictions]).numpy()
    best_iou, best_gt = _best_matches(ground_truths, predictions)
    ap, num_positives = [], []
    for c in range(num_classes):
        positives = int(np.sum((gt_labels == c) & ~difficult))
        rows = labels == c
        tp = _class_curve(scores[rows], best_iou[rows], best_gt[rows], difficult, iou_threshold)
        tp_cum = np.cumsum(tp)
        precision = tp_cum / np.arange(1, len(tp) + 1)
        ap.append(voc_ap(tp_cum / positives, precision, use_07_metric) if positives else float("nan"))
        num_positives.append(positives)
    with_gt = [a for a, n in zip(ap, num_positives, strict=True) if n]
    return {"map": float(np.mean(with_gt)) if with_gt else float("nan"), "ap": ap, "num_positives": num_positives}


class VocMeanAveragePrecision(Metric):
    """Pascal VOC mAP (Everingham et al. 2010; devkit ``VOCevaldet``) of the detections collected over a run:
    ``voc_evaluate`` of every image seen, at IoU ``iou_threshold``, by the VOC2007 11-point rule (``use_07_metric``)
    or the 2010+ area rule, ``difficult`` objects ignored.

    ``update(preds, image_ids, ground_truths)`` takes one dict per image: ``preds`` with ``boxes`` [N, 4] xyxy,
    ``scores`` [N] and contiguous ``labels`` [N]; ``ground_truths`` with ``boxes`` [G, 4] in the same frame,
    ``labels`` [G] and optional ``difficult`` [G] — the detection targets are such dicts, their boxes in input
    pixels: the letterbox scales and shifts an image's boxes alike, which leaves every IoU as it is. ``compute()``
    gives what ``voc_evaluate`` does (``map``, and ``ap`` and ``num_positives`` per class) as tensors.

    Under DDP each rank's states are gathered (``dist_reduce_fx="cat"``); a sample the DistributedSampler repeats
    to pad the last batch is evaluated once, as its first occurrence (:mod:`.samples`).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self, num_classes: int, iou_threshold: float = 0.5, use_07_metric: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        _check_voc_options(num_classes, iou_threshold)
        self.num_classes, self.iou_threshold, self.use_07_metric = num_classes, iou_threshold, use_07_metric
        # Per sample: its image id and how many prediction and ground-truth rows it added (zero included); per row,
        # its values. The rows of sample k are the counts[k] rows after those of samples 0..k-1.
        for name in ("sample_ids", "pred_counts", "pred_boxes", "pred_scores", "pred_labels"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        for name in ("gt_counts", "gt_boxes", "gt_labels", "gt_difficult"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self, preds: Sequence[dict[str, Tensor]], image_ids: Sequence[int] | Tensor, ground_truths: Sequence[dict]
    ) -> None:
        """Add the predictions and the ground truths of the images ``image_ids``, one dict of each per image."""
        ids = torch.as_tensor(image_ids, dtype=torch.int64).reshape(-1)
        if not len(ids) == len(preds) == len(ground_truths):
            raise DataError(
                f"update got {len(preds)} predictions and {len(ground_truths)} ground truths for {len(ids)} image ids; "
                "expected one of each per image"
            )
        try:
            pred_boxes = [p["boxes"].detach().reshape(-1, 4) for p in preds]
            gt_boxes = [t["boxes"].detach().reshape(-1, 4) for t in ground_truths]
            columns = {
                "sample_ids": ids,
                "pred_counts": torch.tensor([len(b) for b in pred_boxes], dtype=torch.int64),
                "pred_boxes": torch.cat(pred_boxes).double(),
                "pred_scores": torch.cat([p["scores"].detach().reshape(-1) for p in preds]).double(),
                "pred_labels": torch.cat([p["labels"].detach().reshape(-1) for p in preds]).long(),
                "gt_counts": torch.tensor([len(b) for b in gt_boxes], dtype=torch.int64),
                "gt_boxes": torch.cat(gt_boxes).double(),
                "gt_labels": torch.cat([t["labels"].detach().reshape(-1) for t in ground_truths]).long(),
                # uint8: a bool tensor does not travel through every backend's all_gather
                "gt_difficult": torch.cat([_difficult(t) for t in ground_truths]).to(torch.uint8),
            }
        except KeyError as err:
            raise DataError(f"a prediction or ground truth has no {err}: expected boxes, labels (and scores)") from None
        for name, value in columns.items():
            getattr(self, name).append(value.to(self.device))

    def compute(self) -> dict[str, Tensor]:
        """``map`` (float64), ``ap`` [C] (NaN for a class without ground truth) and ``num_positives`` [C] (torchmetrics
        squeezes a vector of one class to a scalar)."""
        first = first_occurrences(cat_state(self.sample_ids, torch.zeros(0, dtype=torch.int64)))
        predictions = self._per_image(first, "pred", ("boxes", "scores", "labels"))
        ground_truths = self._per_image(first, "gt", ("boxes", "labels", "difficult"))
        result = voc_evaluate(ground_truths, predictions, self.num_classes, self.iou_threshold, self.use_07_metric)
        return {
            "map": torch.tensor(result["map"], dtype=torch.float64),
            "ap": torch.tensor(result["ap"], dtype=torch.float64),
            "num_positives": torch.tensor(result["num_positives"], dtype=torch.int64),
        }

    def _per_image(self, first: Tensor, prefix: str, keys: Sequence[str]) -> list[dict[str, Tensor]]:
        """One dict of ``keys`` per image, from the first occurrence of each sample's rows of the ``prefix`` states."""
        counts = cat_state(getattr(self, f"{prefix}_counts"), torch.zeros(0, dtype=torch.int64))
        kept_rows = first.repeat_interleave(counts)
        sizes = counts[first].tolist()
        columns = [cat_state(getattr(self, f"{prefix}_{key}"), torch.zeros(0))[kept_rows].split(sizes) for key in keys]
        return [dict(zip(keys, values, strict=True)) for values in zip(*columns, strict=True)]
