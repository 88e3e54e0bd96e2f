"""Segmentation metrics: a confusion-matrix example computed by hand, 255 ignored, batches accumulate."""

from __future__ import annotations

import math

import torch

from vision_research.metrics.segmentation import SegmentationMetrics, scores_from_confusion

# 3 classes; one pixel labelled 255 (ignored whatever is predicted).
TARGET = torch.tensor([[0, 0, 1, 1], [1, 2, 2, 255]])
PRED = torch.tensor([[0, 1, 1, 1], [2, 2, 0, 1]])
# Counted by hand, rows = truth, columns = prediction (the 255 pixel is left out):
#   truth 0: pred 0, 1        -> n00 = 1, n01 = 1
#   truth 1: pred 1, 1, 2     -> n11 = 2, n12 = 1
#   truth 2: pred 2, 0        -> n22 = 1, n20 = 1
# IoU_0 = 1 / (2 + 2 - 1) = 1/3, IoU_1 = 2 / (3 + 3 - 2) = 1/2, IoU_2 = 1 / (2 + 2 - 1) = 1/3
# pixel accuracy = 4 / 7; mean accuracy = (1/2 + 2/3 + 1/2) / 3


def test_hand_computed_example_ignoring_255():
    metric = SegmentationMetrics(3, class_names=["bg", "a", "b"])
    metric.update(PRED[None], TARGET[None])
    scores = metric.compute()
    assert math.isclose(scores["miou"], (1 / 3 + 1 / 2 + 1 / 3) / 3, rel_tol=1e-12)
    assert math.isclose(scores["pixel_acc"], 4 / 7, rel_tol=1e-12)
    assert math.isclose(scores["mean_acc"], (1 / 2 + 2 / 3 + 1 / 2) / 3, rel_tol=1e-12)
    assert [round(float(scores[f"iou_{n}"]), 12) for n in ("bg", "a", "b")] == [round(1 / 3, 12), 0.5, round(1 / 3, 12)]


def test_logits_batches_accumulate_into_one_matrix():
    logits = torch.nn.functional.one_hot(PRED, 3).permute(2, 0, 1).float()[None]
    whole, parts = SegmentationMetrics(3), SegmentationMetrics(3)
    whole.update(torch.cat([logits, logits.flip(-1)]), torch.stack([TARGET, TARGET.flip(-1)]))
    parts.update(logits, TARGET[None])
    parts.update(logits.flip(-1), TARGET.flip(-1)[None])
    assert torch.equal(whole.confmat, parts.confmat)
    assert whole.compute()["miou"] == parts.compute()["miou"]


def test_absent_classes_are_left_out_of_the_mean():
    matrix = torch.tensor([[3, 1, 0], [0, 2, 0], [0, 0, 0]])  # class 2 never appears
    scores = scores_from_confusion(matrix)
    assert math.isnan(scores["iou"][2])
    assert math.isclose(scores["miou"], (3 / 4 + 2 / 3) / 2, rel_tol=1e-12)
