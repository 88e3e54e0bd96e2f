"""Semantic segmentation metrics from one confusion matrix accumulated over the whole evaluation set.

The standard definitions (Long et al. 2015, Sec. 5; the Pascal VOC devkit): with n_ij the number of pixels
of class i predicted as j and t_i = Σ_j n_ij,

- pixel accuracy  Σ_i n_ii / Σ_i t_i
- mean accuracy   (1/C') Σ_i n_ii / t_i
- IoU of class i  n_ii / (t_i + Σ_j n_ji − n_ii);  mean IoU over the classes C' present in the ground truth
  or the predictions (a class absent from both has no IoU and is left out of the mean).

Pixels labelled ``ignore_index`` (255) count nowhere. The matrix is torchmetrics' ``MulticlassConfusionMatrix``
state, summed across processes under DDP, so the figures are those of the whole set, not a mean of batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics.classification import MulticlassConfusionMatrix


def scores_from_confusion(matrix: torch.Tensor) -> dict[str, torch.Tensor]:
    """miou, pixel_acc, mean_acc and the per-class IoU vector (NaN for absent classes) of a [C, C] matrix."""
    matrix = matrix.double()
    true_positives = matrix.diagonal()
    per_target = matrix.sum(dim=1)
    union = per_target + matrix.sum(dim=0) - true_positives
    nan = torch.tensor(float("nan"), dtype=matrix.dtype, device=matrix.device)
    iou = torch.where(union > 0, true_positives / union, nan)
    accuracy = torch.where(per_target > 0, true_positives / per_target, nan)
    return {
        "miou": iou.nanmean(),
        "pixel_acc": true_positives.sum() / matrix.sum().clamp(min=1),
        "mean_acc": accuracy.nanmean(),
        "iou": iou,
    }


class SegmentationMetrics(MulticlassConfusionMatrix):
    """Confusion-matrix metrics of class maps: ``update(preds [N, H, W] or logits [N, C, H, W], target [N, H, W])``."""

    def __init__(self, num_classes: int, ignore_index: int = 255, class_names: Sequence[str] | None = None) -> None:
        # The datamodules validate class maps on load, so the per-batch value check is skipped for speed.
        super().__init__(num_classes, ignore_index=ignore_index, validate_args=False)
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        if preds.ndim == target.ndim + 1:
            preds = preds.argmax(dim=1)
        super().update(preds, target)

    def compute(self) -> dict[str, torch.Tensor]:
        scores = scores_from_confusion(super().compute())
        per_class = scores.pop("iou")
        scores.update({f"iou_{name}": value for name, value in zip(self.class_names, per_class, strict=True)})
        return scores
