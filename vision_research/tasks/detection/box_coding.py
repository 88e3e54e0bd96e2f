"""The one decoding of YOLO boxes, shared by the losses, evaluation, prediction and exported models' outputs.

**YOLOv1** — J. Redmon, S. Divvala, R. Girshick, A. Farhadi, "You Only Look Once: Unified, Real-Time Object
Detection", CVPR 2016, Sec. 2: the image is divided into an S×S grid; each cell predicts B boxes
(x, y, w, h, confidence) and one class distribution P(class | object), an S×S×(5B + C) tensor (7×7×30 on VOC),
raw values per cell ``[x, y, w, h, conf] × B`` then C class scores. The parameterisation applied by ``decode_v1``
and ``YoloV1Loss``:

- x, y = sigmoid(t_x), sigmoid(t_y): the centre's offset inside its cell, in [0, 1];
- sigmoid(t_w), sigmoid(t_h) are **√w, √h**, the square roots of the width and height as fractions of the
  image (the paper regresses √w, √h, Sec. 2.2; Darknet's ``sqrt`` detection layer does too): the decoded
  width is sigmoid(t_w)², and the loss compares sigmoid(t_w) with √ŵ directly;
- confidence = sigmoid(t_c); P(class | object) = softmax over the C class scores of the cell.

**YOLOv2 / v3** — J. Redmon, A. Farhadi, "YOLO9000: Better, Faster, Stronger", CVPR 2017, Sec. 2 ("Dimension
Clusters", "Direct location prediction"); "YOLOv3: An Incremental Improvement", 2018, Sec. 2.1-2.3. Per cell and
anchor (prior), (t_x, t_y, t_w, t_h, t_o, C class logits), decoded by ``anchor_boxes`` as

    b_x = (sigmoid(t_x) + c_x) · stride,   b_y = (sigmoid(t_y) + c_y) · stride,
    b_w = p_w · exp(t_w),                  b_h = p_h · exp(t_h),

with (c_x, c_y) the cell's column and row and the anchors (p_w, p_h) in input pixels; objectness = sigmoid(t_o)
and, as v3 (Sec. 2.2), independent per-class sigmoids.

Deviation: t_w, t_h are clamped at ``MAX_LOG_SCALE`` before exp(), so that a wild output gives a finite box (the
IoU losses and their gradients stay finite). It only bounds sizes at e⁸ ≈ 3,000 × the anchor, far beyond any
input: evaluation clips boxes to the image, which makes the clamp no change there.

Boxes are xyxy pixels of the (square, letterboxed) network input of side ``image_size``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_convert, clip_boxes_to_image

MAX_LOG_SCALE = 8.0  # t_w, t_h clamped before exp(): at most e⁸ ≈ 3,000 × the anchor


def v1_cell_boxes(box_raw: Tensor, col: Tensor, row: Tensor, grid_size: int) -> Tensor:
    """(cx, cy, w, h) as fractions of the image from raw YOLOv1 box outputs [..., ≥4] (Sec. 2).

    cx = (col + sigmoid(t_x)) / S, cy = (row + sigmoid(t_y)) / S, w = sigmoid(t_w)², h = sigmoid(t_h)²
    (sigmoid(t_w) is √w); ``col`` and ``row`` broadcast against ``box_raw[..., 0]``.
    """
    xy = box_raw[..., :2].sigmoid()
    cx = (col + xy[..., 0]) / grid_size
    cy = (row + xy[..., 1]) / grid_size
    wh = box_raw[..., 2:4].sigmoid().square()
    return torch.stack([cx, cy, wh[..., 0], wh[..., 1]], -1)


def decode_v1(raw: Tensor, image_size: int, num_boxes: int = 2) -> tuple[Tensor, Tensor]:
    """YOLOv1 predictions in input pixels: boxes [N, S·S·B, 4] xyxy and class-specific scores [N, S·S·B, C].

    Score = confidence × P(class | object), the paper's test-time class-specific confidence (Sec. 2).
    Boxes are ordered cell by cell (row-major), then by box index within the cell.
    """
    raw = raw.float()
    n, s = raw.shape[:2]
    box = raw[..., : 5 * num_boxes].unflatten(-1, (num_boxes, 5))
    cells = torch.arange(s, device=raw.device, dtype=raw.dtype)
    boxes = v1_cell_boxes(box, cells.view(1, s, 1), cells.view(s, 1, 1), s) * image_size
    class_probs = raw[..., 5 * num_boxes :].softmax(-1)
    scores = box[..., 4].sigmoid().unsqueeze(-1) * class_probs.unsqueeze(-2)
    return box_convert(boxes, "cxcywh", "xyxy").reshape(n, -1, 4), scores.reshape(n, -1, scores.shape[-1])


def anchor_boxes(offsets: Tensor, cells: Tensor, anchors: Tensor, stride: int) -> Tensor:
    """[..., 4] xyxy input pixels from raw (t_x, t_y, t_w, t_h) ``offsets`` [..., 4] (YOLOv2 Sec. 2, "Direct location
    prediction"): b_x = (sigmoid(t_x) + c_x) · stride, b_w = p_w · exp(min(t_w, MAX_LOG_SCALE)), b_y, b_h likewise.

    ``cells`` (c_x, c_y) and ``anchors`` (p_w, p_h, input pixels) are [..., 2], broadcast against the offsets: a
    whole grid (``decode_anchor_boxes``) or the loss's positives, one cell and anchor each.
    """
    centre = (offsets[..., :2].sigmoid() + cells) * stride
    size = anchors * offsets[..., 2:4].clamp(max=MAX_LOG_SCALE).exp()
    return box_convert(torch.cat([centre, size], -1), "cxcywh", "xyxy")


def decode_anchor_boxes(raw: Tensor, anchors: Tensor | Sequence[tuple[float, float]], stride: int) -> Tensor:
    """[N, A, h, w, 4] xyxy input pixels from one scale's raw output [N, A, h, w, ≥4]: ``anchor_boxes`` at every
    cell of the grid and every anchor of the scale."""
    raw = raw.float()
    _, a, h, w, _ = raw.shape
    anchors = torch.as_tensor(anchors, dtype=raw.dtype, device=raw.device).view(1, a, 1, 1, 2)
    rows, cols = torch.meshgrid(
        torch.arange(h, device=raw.device, dtype=raw.dtype),
        torch.arange(w, device=raw.device, dtype=raw.dtype),
        indexing="ij",
    )
    return anchor_boxes(raw[..., :4], torch.stack([cols, rows], -1), anchors, stride)


def decode_anchors(
    raws: Sequence[Tensor], anchors: Sequence[Tensor | Sequence[tuple[float, float]]], strides: Sequence[int]
) -> tuple[Tensor, Tensor]:
    """YOLOv2/v3 predictions of all scales: boxes [N, P, 4] xyxy input pixels and scores [N, P, C].

    Score = objectness × sigmoid(class logit) (YOLOv3 Sec. 2.2: independent logistic classifiers).
    P = Σ A·h·w, ordered scale by scale (as given), then anchor, row, column.
    """
    boxes, scores = [], []
    for raw, scale_anchors, stride in zip(raws, anchors, strides, strict=True):
        raw = raw.float()
        boxes.append(decode_anchor_boxes(raw, scale_anchors, stride).flatten(1, 3))
        scores.append((raw[..., 4:5].sigmoid() * raw[..., 5:].sigmoid()).flatten(1, 3))
    return torch.cat(boxes, 1), torch.cat(scores, 1)


def _postprocess_image(
    boxes: Tensor,
    scores: Tensor,
    score_threshold: float,
    iou_threshold: float,
    max_detections: int,
    class_agnostic: bool,
    pre_nms_top_k: int,
) -> dict[str, Tensor]:
    """NMS over the (box, class) pairs of one image whose score exceeds ``score_threshold``."""
    num_classes = scores.shape[-1]
    nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    flat = scores.flatten()
    candidates = torch.nonzero(((scores > score_threshold) & nonempty[:, None]).flatten()).squeeze(1)
    candidates = candidates[flat[candidates].topk(min(pre_nms_top_k, len(candidates))).indices]
    labels = candidates % num_classes
    kept_boxes, kept_scores = boxes[candidates // num_classes], flat[candidates]
    groups = torch.zeros_like(labels) if class_agnostic else labels
    keep = batched_nms(kept_boxes, kept_scores, groups, iou_threshold)[:max_detections]
    return {"boxes": kept_boxes[keep], "scores": kept_scores[keep], "labels": labels[keep]}


@torch.no_grad()
def postprocess(
    boxes: Tensor,
    scores: Tensor,
    image_size: int,
    score_threshold: float = 0.001,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
    class_agnostic: bool = False,
    pre_nms_top_k: int = 1000,
) -> list[dict[str, Tensor]]:
    """Per-image detections ``{"boxes" [K, 4] xyxy, "scores" [K], "labels" [K] int64}``, best first.

    ``boxes`` [N, P, 4] and ``scores`` [N, P, C] come from ``decode_v1`` / ``decode_anchors``. Boxes are
    clipped to the image (boxes left empty are dropped), then every (box, class) pair scoring above
    ``score_threshold`` is a candidate; the
    ``pre_nms_top_k`` best candidates (for speed, as torchvision's RetinaNet) go through
    ``torchvision.ops.batched_nms`` per class (one group when ``class_agnostic``), and the
    ``max_detections`` best survivors are kept.
    """
    boxes = clip_boxes_to_image(boxes.float(), (image_size, image_size))
    return [
        _postprocess_image(b, s, score_threshold, iou_threshold, max_detections, class_agnostic, pre_nms_top_k)
        for b, s in zip(boxes, scores.float(), strict=True)
    ]


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
