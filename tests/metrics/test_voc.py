"""VOC AP against hand-computed examples (the devkit's rules), and VocMeanAveragePrecision against voc_evaluate: in
batches, and with a sample repeated as DDP's sampler pads."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from vision_research.errors import ConfigError, DataError
from vision_research.metrics import VocMeanAveragePrecision, voc_ap, voc_evaluate

# One class, 5 ground-truth boxes (a1 a2 a3 in image A, b1 b2 in image B) and 6 detections. By score:
#   0.9 on a1 TP | 0.8 on a1 again FP (double detection) | 0.7 on b1 TP | 0.6 on a2 TP | 0.5 background FP |
#   0.4 on b2 TP                                            (a3 is never found)
# cumulative TP 1 1 2 3 3 4 over ranks 1..6:
#   recall    1/5 1/5 2/5 3/5 3/5 4/5
#   precision 1   1/2 2/3 3/4 3/5 2/3
# VOC07, best precision at recall >= t for t = 0, .1, ..., 1:
#   t = 0, .1, .2 -> 1;  t = .3, .4, .5, .6 -> 3/4;  t = .7, .8 -> 2/3;  t = .9, 1 -> 0
#   AP = (3 * 1 + 4 * 3/4 + 2 * 2/3) / 11 = (22/3) / 11 = 2/3
# VOC2010+, precision envelope (max to the right) over the recall steps 0-.2, .2-.4, .4-.6, .6-.8, .8-1:
#   1, 3/4, 3/4, 2/3, 0 -> AP = 1/5 * (1 + 3/4 + 3/4 + 2/3 + 0) = 1/5 + 3/20 + 3/20 + 2/15 = 19/30

RECALL = np.array([1, 1, 2, 3, 3, 4]) / 5
PRECISION = np.array([1, 1 / 2, 2 / 3, 3 / 4, 3 / 5, 2 / 3])


def voc_example(difficult_box: str = "none") -> tuple[list[dict], list[dict]]:
    """The example above (detections stored out of score order); ``difficult_box``: "none", "flagged" (an
    extra difficult box in B, detected at 0.85), "removed" (that detection, no box) or "plain" (not difficult)."""
    gt_a = {"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]]), "labels": torch.zeros(3)}
    gt_b = {"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40]]), "labels": torch.zeros(2)}
    pred_a = {"boxes": torch.tensor([[20.0, 0, 30, 10], [0, 0, 10, 10], [1, 0, 10, 10]]), "scores": [0.6, 0.9, 0.8]}
    pred_b = {"boxes": torch.tensor([[60.0, 60, 70, 70], [20, 20, 40, 40], [0, 0, 10, 10]]), "scores": [0.5, 0.4, 0.7]}
    if difficult_box != "none":
        pred_b = {
            "boxes": torch.cat([pred_b["boxes"], torch.tensor([[80.0, 80, 90, 90]])]),
            "scores": [*pred_b["scores"], 0.85],
        }
    if difficult_box in ("flagged", "plain"):
        gt_b = {"boxes": torch.cat([gt_b["boxes"], torch.tensor([[80.0, 80, 90, 90]])]), "labels": torch.zeros(3)}
        gt_b["difficult"] = torch.tensor([False, False, difficult_box == "flagged"])
    preds = [
        {
            "boxes": p["boxes"],
            "scores": torch.tensor(p["scores"]),
            "labels": torch.zeros(len(p["scores"]), dtype=torch.int64),
        }
        for p in (pred_a, pred_b)
    ]
    gts = [{**g, "labels": g["labels"].long()} for g in (gt_a, gt_b)]
    return gts, preds


def test_voc07_eleven_point_ap_by_hand():
    assert voc_ap(RECALL, PRECISION, use_07_metric=True) == pytest.approx(2 / 3, abs=1e-12)
    # Recall 3/5 reaches the threshold 0.6 (np.arange(0, 1.1, 0.1)[6] is 0.6000000000000001 and would not).
    assert voc_ap(RECALL[:5], PRECISION[:5], use_07_metric=True) == pytest.approx((3 + 4 * 3 / 4) / 11, abs=1e-12)


def test_voc_area_ap_by_hand():
    assert Fraction(1, 5) + Fraction(3, 20) + Fraction(3, 20) + Fraction(2, 15) == Fraction(19, 30)
    assert voc_ap(RECALL, PRECISION, use_07_metric=False) == pytest.approx(19 / 30, abs=1e-12)
    assert voc_ap(np.zeros(0), np.zeros(0), use_07_metric=False) == 0.0


def test_voc_evaluate_matches_the_hand_example_with_a_double_detection_as_fp():
    gts, preds = voc_example()
    area = voc_evaluate(gts, preds, num_classes=1)
    assert area["ap"] == [pytest.approx(19 / 30, abs=1e-12)] and area["num_positives"] == [5]
    assert voc_evaluate(gts, preds, num_classes=1, use_07_metric=True)["map"] == pytest.approx(2 / 3, abs=1e-12)


def test_voc_difficult_boxes_follow_the_devkit():
    baseline = voc_evaluate(*voc_example("none"), num_classes=1)
    flagged = voc_evaluate(*voc_example("flagged"), num_classes=1)
    removed = voc_evaluate(*voc_example("removed"), num_classes=1)
    plain = voc_evaluate(*voc_example("plain"), num_classes=1)
    # Flagged: out of the positives and its detection ignored -> exactly the example without either.
    assert flagged["num_positives"] == [5] and flagged["map"] == baseline["map"]
    # Removed from the annotations: the detection on it is a false positive at rank 2 -> T F F T T F T over 5:
    #   recall 1 1 1 2 3 3 4 (/5), precision 1 1/2 1/3 1/2 3/5 1/2 4/7, envelope at the steps 1 3/5 3/5 4/7
    #   AP = 1/5 + 1/5 * 3/5 + 1/5 * 3/5 + 1/5 * 4/7 = 97/175
    assert removed["num_positives"] == [5] and removed["map"] == pytest.approx(97 / 175, abs=1e-12)
    # Not difficult: a sixth positive, found at rank 2 -> T T F T T F T over 6:
    #   recall 1 2 2 3 4 4 5 (/6), precision 1 1 2/3 3/4 4/5 2/3 5/7, envelope at the steps 1 1 4/5 4/5 5/7
    #   AP = 1/6 + 1/6 + 1/6 * 4/5 + 1/6 * 4/5 + 1/6 * 5/7 = 151/210
    assert plain["num_positives"] == [6] and plain["map"] == pytest.approx(151 / 210, abs=1e-12)


def test_voc_classes_without_ground_truth_are_left_out_of_the_mean():
    gts, preds = voc_example()
    preds[1] = {**preds[1], "labels": torch.tensor([1, 0, 0])}  # the background FP now claims class 1
    result = voc_evaluate(gts, preds, num_classes=2)
    assert np.isnan(result["ap"][1]) and result["num_positives"] == [5, 0]
    # Class 0 lost its rank-5 FP: T F T T T, precision 1 1/2 2/3 3/4 4/5, envelope at the recall steps
    # 1 4/5 4/5 4/5 -> AP = 1/5 + 3 * 1/5 * 4/5 = 17/25
    assert result["map"] == result["ap"][0] == pytest.approx(17 / 25, abs=1e-12)


def test_voc_bad_input():
    gts, preds = voc_example()
    preds[0] = {**preds[0], "labels": torch.tensor([0, 3, 0])}
    with pytest.raises(DataError, match="prediction 0 has label 3, outside 0..0"):
        voc_evaluate(gts, preds, num_classes=1)
    with pytest.raises(ConfigError, match="iou_threshold"):
        voc_evaluate(gts, preds, num_classes=1, iou_threshold=0.0)


# --------------------------------------------------------------------------------- VocMeanAveragePrecision


def assert_same_result(metric: VocMeanAveragePrecision, expected: dict) -> None:
    result = metric.compute()
    assert set(result) == {"map", "ap", "num_positives"}
    assert result["map"].item() == expected["map"] or (np.isnan(expected["map"]) and result["map"].isnan())
    ap = torch.tensor(expected["ap"], dtype=torch.float64)
    torch.testing.assert_close(result["ap"].reshape(-1), ap, equal_nan=True)  # torchmetrics squeezes one class's
    assert result["num_positives"].reshape(-1).tolist() == expected["num_positives"]


@pytest.mark.parametrize("difficult_box", ["none", "flagged", "plain"])
@pytest.mark.parametrize("use_07_metric", [False, True])
def test_metric_in_batches_equals_voc_evaluate_at_once(difficult_box, use_07_metric):
    gts, preds = voc_example(difficult_box)
    metric = VocMeanAveragePrecision(num_classes=1, use_07_metric=use_07_metric)
    metric.update(preds[:1], [10], gts[:1])
    metric.update(preds[1:], torch.tensor([11]), gts[1:])
    assert_same_result(metric, voc_evaluate(gts, preds, num_classes=1, use_07_metric=use_07_metric))


def test_metric_leaves_classes_without_ground_truth_out_of_the_mean():
    gts, preds = voc_example()
    preds[1] = {**preds[1], "labels": torch.tensor([1, 0, 0])}
    metric = VocMeanAveragePrecision(num_classes=2)
    metric.update(preds, [10, 11], gts)
    assert_same_result(metric, voc_evaluate(gts, preds, num_classes=2))


def test_metric_counts_a_repeated_sample_once():
    """What a 2-rank gather looks like when the DistributedSampler pads: a sample of rank 0 again on rank 1. The
    repeat is recognised by its image id, not by its rows: a copy whose rows differ in the last bit and by one row
    still leaves one result per image (the first occurrence)."""
    gts, preds = voc_example("flagged")
    expected = voc_evaluate(gts, preds, num_classes=1)
    noisy = {k: v[:-1] for k, v in preds[0].items()} | {"scores": preds[0]["scores"][:-1] + 1e-6}
    assert voc_evaluate([*gts, gts[0]], [*preds, noisy], num_classes=1)["map"] != expected["map"]
    metric = VocMeanAveragePrecision(num_classes=1)
    metric.update(preds[:1], [10], gts[:1])
    metric.update([preds[1], noisy], [11, 10], [gts[1], gts[0]])
    assert_same_result(metric, expected)


def test_metric_bad_input():
    with pytest.raises(ConfigError, match="iou_threshold"):
        VocMeanAveragePrecision(num_classes=1, iou_threshold=1.5)
    gts, preds = voc_example()
    metric = VocMeanAveragePrecision(num_classes=1)
    with pytest.raises(DataError, match="2 predictions and 1 ground truths for 2 image ids"):
        metric.update(preds, [10, 11], gts[:1])
    with pytest.raises(DataError, match="has no 'scores'"):
        metric.update([{"boxes": preds[0]["boxes"], "labels": preds[0]["labels"]}], [10], gts[:1])


def test_no_image_scored_gives_no_ap():
    """An evaluation over no images (every image filtered out, an empty split) has no ground truth: NaN, as a class
    without ground truth has, rather than an error from deep inside torch."""
    empty = voc_evaluate([], [], 3)
    assert math.isnan(empty["map"]) and all(math.isnan(a) for a in empty["ap"]) and empty["num_positives"] == [0] * 3
    assert math.isnan(float(VocMeanAveragePrecision(3).compute()["map"]))
