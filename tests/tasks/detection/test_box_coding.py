"""Box decoding against the formulas, its bound on sizes, post-processing against torchvision, the loss's targets
decoded back."""

import math

import pytest
import torch
from torchvision.ops import box_iou, nms

from vision_research.tasks.detection import (
    MAX_LOG_SCALE,
    YOLOV3_ANCHORS,
    YoloAnchorLoss,
    anchor_boxes,
    decode_anchor_boxes,
    decode_anchors,
    decode_v1,
    flatten_targets,
    postprocess,
)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_decode_v1_places_a_box_where_the_formula_says():
    s, b, c, size = 2, 2, 3, 64
    raw = torch.zeros(1, s, s, 5 * b + c)
    # Cell row 1, column 0, box 1: sigmoid offsets (0.25, 0.75), √w = 0.5, √h = 0.75, confidence 0.8.
    raw[0, 1, 0, 5:10] = torch.tensor([logit(0.25), logit(0.75), 0.0, logit(0.75), logit(0.8)])
    raw[0, 1, 0, 10:] = torch.tensor([0.0, 0.0, math.log(2)])  # P(class | object) = (1/4, 1/4, 1/2)
    boxes, scores = decode_v1(raw, size, num_boxes=b)
    assert boxes.shape == (1, s * s * b, 4) and scores.shape == (1, s * s * b, c)
    index = (1 * s + 0) * b + 1
    cx, cy = (0 + 0.25) / 2 * 64, (1 + 0.75) / 2 * 64  # 8, 56
    w, h = 0.5**2 * 64, 0.75**2 * 64  # 16, 36
    torch.testing.assert_close(boxes[0, index], torch.tensor([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]))
    torch.testing.assert_close(scores[0, index], 0.8 * torch.tensor([0.25, 0.25, 0.5]))


def test_decode_anchors_places_a_box_where_the_formula_says():
    anchors, stride = [(10.0, 20.0), (40.0, 30.0)], 16
    raw = torch.zeros(1, 2, 2, 3, 5 + 2)
    # Anchor 1 at row 1, column 2: σ(t_x) = 0.5, σ(t_y) = 0.25, w = 40·e^{log 2} = 80, h = 30; objectness 0.8.
    raw[0, 1, 1, 2] = torch.tensor([0.0, logit(0.25), math.log(2), 0.0, logit(0.8), logit(0.5), logit(0.1)])
    boxes, scores = decode_anchors([raw], [anchors], [stride])
    index = (1 * 2 + 1) * 3 + 2  # anchor, row, column
    cx, cy = (0.5 + 2) * 16, (0.25 + 1) * 16  # 40, 20
    torch.testing.assert_close(boxes[0, index], torch.tensor([cx - 40, cy - 15, cx + 40, cy + 15]))
    torch.testing.assert_close(scores[0, index], torch.tensor([0.8 * 0.5, 0.8 * 0.1]))


def test_anchor_sizes_are_bounded_at_e8_times_the_anchor_in_the_grid_and_the_losss_positives():
    """exp(100) overflows fp32: the clamp of t_w, t_h at MAX_LOG_SCALE keeps the box finite, e⁸ × the anchor."""
    raw = torch.zeros(1, 1, 2, 3, 5 + 1)
    raw[0, 0, 1, 2, 2:4] = torch.tensor([100.0, math.log(3)])  # anchor 1 at row 1, column 2
    boxes = decode_anchor_boxes(raw, [(10.0, 20.0)], 16)
    assert torch.isfinite(boxes).all()
    x1, y1, x2, y2 = boxes[0, 0, 1, 2]
    assert (x2 - x1).item() == pytest.approx(10 * math.exp(MAX_LOG_SCALE), rel=1e-6)
    assert (y2 - y1).item() == pytest.approx(60.0, rel=1e-6)  # below the bound: unchanged
    # The loss decodes its positives, one cell and anchor each, with the same function.
    positive = anchor_boxes(raw[0, 0, 1, 2, :4], torch.tensor([2, 1]), torch.tensor([10.0, 20.0]), 16)
    torch.testing.assert_close(positive, boxes[0, 0, 1, 2], rtol=0, atol=0)


def _reference_nms(boxes, scores, image_size, score_threshold, iou_threshold, max_detections):
    """Per class: threshold, torchvision.ops.nms; then all classes by score."""
    boxes = boxes.clamp(0, image_size)
    found = []
    for label in range(scores.shape[1]):
        mask = scores[:, label] > score_threshold
        class_boxes, class_scores = boxes[mask], scores[mask, label]
        found += [(class_scores[k], label, class_boxes[k]) for k in nms(class_boxes, class_scores, iou_threshold)]
    found.sort(key=lambda hit: -hit[0].item())
    return found[:max_detections]


def _example(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[20.0, 20.0], [24.0, 22.0], [50.0, 40.0], [52.0, 44.0], [10.0, 60.0], [21.0, 19.0]])
    sizes = torch.tensor([[20.0, 20.0], [22.0, 18.0], [30.0, 20.0], [28.0, 24.0], [30.0, 16.0], [18.0, 22.0]])
    boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], 1)
    return boxes, torch.rand(6, 3, generator=generator)


def test_postprocess_equals_per_class_nms():
    boxes, scores = _example()
    for threshold, max_detections in [(0.001, 100), (0.5, 100), (0.001, 3)]:
        (got,) = postprocess(boxes[None], scores[None], 64, threshold, 0.5, max_detections)
        expected = _reference_nms(boxes, scores, 64, threshold, 0.5, max_detections)
        torch.testing.assert_close(got["scores"], torch.stack([hit[0] for hit in expected]))
        assert got["labels"].tolist() == [hit[1] for hit in expected] and got["labels"].dtype == torch.int64
        torch.testing.assert_close(got["boxes"], torch.stack([hit[2] for hit in expected]))
        assert (got["scores"] > threshold).all() and len(got["scores"]) <= max_detections


def test_postprocess_clips_thresholds_and_can_be_class_agnostic():
    boxes = torch.tensor([[[-10.0, -5.0, 30.0, 80.0], [40.0, 40.0, 50.0, 50.0], [70.0, 10.0, 90.0, 20.0]]])
    scores = torch.tensor([[[0.9, 0.8], [0.0005, 0.3], [0.95, 0.95]]])  # the third box lies outside: dropped
    (per_class,) = postprocess(boxes, scores, 64)
    torch.testing.assert_close(per_class["boxes"][0], torch.tensor([0.0, 0.0, 30.0, 64.0]))
    assert per_class["labels"].tolist() == [0, 1, 1]  # (box 0, class 0), (box 0, class 1), (box 1, class 1)
    (agnostic,) = postprocess(boxes, scores, 64, class_agnostic=True)
    assert agnostic["labels"].tolist() == [0, 1] and agnostic["scores"].tolist() == pytest.approx([0.9, 0.3])
    (empty,) = postprocess(boxes, scores, 64, score_threshold=0.9)
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)


def test_anchor_targets_decode_back_to_the_ground_truth():
    """Encode ground truths as the loss does, write those targets into raw outputs, decode: IoU ≈ 1."""
    strides, size = [8, 16, 32], 416
    truth = torch.tensor([[50.3, 60.7, 90.1, 200.9], [200.0, 210.0, 390.0, 401.0], [10.5, 12.25, 20.75, 30.5]])
    targets = [{"boxes": truth, "labels": torch.tensor([0, 1, 2])}]
    grids = [(size // s, size // s) for s in strides]
    positives = YoloAnchorLoss(3, YOLOV3_ANCHORS, strides).assign(*flatten_targets(targets, "cpu"), grids)
    assert [len(p.image) for p in positives] == [1, 1, 1]  # small, medium, large: one box per scale
    raws = []
    for (h, w), pos in zip(grids, positives, strict=True):
        raw = torch.zeros(1, 3, h, w, 5 + 3)
        raw[..., 4] = -10.0
        raw[pos.image, pos.anchor, pos.row, pos.col, :2] = torch.logit(pos.xy)
        raw[pos.image, pos.anchor, pos.row, pos.col, 2:4] = pos.wh
        raw[pos.image, pos.anchor, pos.row, pos.col, 4] = 10.0
        raws.append(raw)
    boxes, scores = decode_anchors(raws, YOLOV3_ANCHORS, strides)
    decoded = boxes[0, scores[0].amax(1).topk(3).indices]
    torch.testing.assert_close(box_iou(truth, decoded).amax(1), torch.ones(3), atol=1e-5, rtol=0)
