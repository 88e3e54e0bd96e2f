"""YOLO detection heads, their decoding and post-processing.

**YOLOv1** — J. Redmon, S. Divvala, R. Girshick, A. Farhadi, "You Only Look Once: Unified, Real-Time Object
Detection", CVPR 2016, Sec. 2: the image is divided into an S×S grid; each cell predicts B boxes
(x, y, w, h, confidence) and one class distribution P(class | object), an S×S×(5B + C) tensor (7×7×30 on VOC).
``YoloV1Head`` outputs raw values in that layout, per cell ``[x, y, w, h, conf] × B`` then C class scores.
The parameterisation applied by ``decode_v1`` and ``YoloV1Loss``:

- x, y = sigmoid(t_x), sigmoid(t_y): the centre's offset inside its cell, in [0, 1];
- sigmoid(t_w), sigmoid(t_h) are **√w, √h**, the square roots of the width and height as fractions of the
  image (the paper regresses √w, √h, Sec. 2.2; Darknet's ``sqrt`` detection layer does too): the decoded
  width is sigmoid(t_w)², and the loss compares sigmoid(t_w) with √ŵ directly;
- confidence = sigmoid(t_c); P(class | object) = softmax over the C class scores of the cell.

**YOLOv2 / v3** — J. Redmon, A. Farhadi, "YOLO9000: Better, Faster, Stronger", CVPR 2017, Sec. 2 ("Dimension
Clusters", "Direct location prediction"); "YOLOv3: An Incremental Improvement", 2018, Sec. 2.1-2.3.
``YoloAnchorHead`` predicts, per cell and anchor (prior), (t_x, t_y, t_w, t_h, t_o, C class logits), decoded as

    b_x = (sigmoid(t_x) + c_x) · stride,   b_y = (sigmoid(t_y) + c_y) · stride,
    b_w = p_w · exp(t_w),                  b_h = p_h · exp(t_h),

with (c_x, c_y) the cell's column and row and the anchors (p_w, p_h) in input pixels; objectness = sigmoid(t_o)
and, as v3 (Sec. 2.2), independent per-class sigmoids. ``MultiScaleYoloHead`` puts one such head on each chosen
backbone stage (v3: 3 scales × 3 anchors, Sec. 2.3). ``kmeans_anchors`` computes the v2 dimension clusters.

Deviation: the bias of every confidence / objectness output starts at logit(0.01), so that the initial
confidences are ≈0.01 instead of 0.5 — the many empty cells then do not swamp the first updates (as in
RetinaNet's prior initialisation); the papers do not state an initialisation.

Boxes are xyxy pixels of the (square, letterboxed) network input of side ``image_size``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms, box_convert, box_iou, clip_boxes_to_image

from ..errors import ConfigError
from ..models.layers import ConvNormAct
from .neck import build_neck

# The 9 COCO dimension clusters of YOLOv3 (Sec. 2.3), in pixels of a 416×416 input, finest scale first.
YOLOV3_ANCHORS: list[list[tuple[float, float]]] = [
    [(10, 13), (16, 30), (33, 23)],
    [(30, 61), (62, 45), (59, 119)],
    [(116, 90), (156, 198), (373, 326)],
]
CONFIDENCE_PRIOR = 0.01
# Darknet's activation: leaky ReLU with slope 0.1 (YOLOv1 Sec. 2.2, eq. 2).
_leaky_relu = partial(nn.LeakyReLU, negative_slope=0.1)


def _fill_confidence_prior(bias: Tensor) -> None:
    """Fill ``bias`` (a view of the confidence entries of a bias) with logit(CONFIDENCE_PRIOR)."""
    with torch.no_grad():
        bias.fill_(-math.log((1 - CONFIDENCE_PRIOR) / CONFIDENCE_PRIOR))


class YoloV1Head(nn.Module):
    """The YOLOv1 S×S grid head (Redmon et al. 2016, Sec. 2 and Fig. 3): [N, C, h, w] → [N, S, S, 5B + C] raw.

    Default (``fc=False``): ConvNormAct 3×3 (leaky 0.1) → adaptive average pool to S×S (the identity when the
    map is already S×S) → 1×1 conv to 5B + C; works for any input size. ``fc=True``: the paper's form, the same
    conv and pool, then flatten → Linear(4096) → leaky 0.1 → dropout (``dropout``, this form only) →
    Linear(S·S·(5B + C)).
    Outputs are raw; see the module docstring for their parameterisation.
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        grid_size: int = 7,
        num_boxes: int = 2,
        hidden_channels: int = 512,
        fc: bool = False,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if grid_size < 1 or num_boxes < 1 or num_classes < 1:
            raise ConfigError(
                f"YoloV1Head needs grid_size, num_boxes, num_classes >= 1; got {grid_size}, {num_boxes}, {num_classes}"
            )
        self.grid_size, self.num_boxes, self.num_classes = grid_size, num_boxes, num_classes
        self.out_channels = 5 * num_boxes + num_classes
        self.conv = ConvNormAct(in_chans, hidden_channels, 3, act=_leaky_relu)
        self.pool = nn.AdaptiveAvgPool2d(grid_size)
        if fc:
            self.predict = nn.Sequential(
                nn.Flatten(),
                nn.Linear(hidden_channels * grid_size * grid_size, 4096),
                _leaky_relu(),
                nn.Dropout(dropout),
                nn.Linear(4096, grid_size * grid_size * self.out_channels),
            )
            bias = self.predict[-1].bias.view(grid_size * grid_size, self.out_channels)
        else:
            self.predict = nn.Conv2d(hidden_channels, self.out_channels, 1)
            bias = self.predict.bias.view(1, self.out_channels)
        _fill_confidence_prior(bias[:, 4 : 5 * num_boxes : 5])
        self.fc = fc

    def forward(self, x: Tensor) -> Tensor:
        out = self.predict(self.pool(self.conv(x)))
        s = self.grid_size
        if self.fc:
            return out.view(-1, s, s, self.out_channels)
        return out.permute(0, 2, 3, 1)


class YoloAnchorHead(nn.Module):
    """One YOLOv2/v3 scale (Redmon & Farhadi 2017 Sec. 2, 2018 Sec. 2.1): [N, C, h, w] → [N, A, h, w, 5 + C] raw.

    ConvNormAct 3×3 (leaky 0.1) → 1×1 conv to A·(5 + C); per anchor (t_x, t_y, t_w, t_h, t_o, class logits).
    ``anchors`` are (width, height) in input pixels, ``stride`` the stage's reduction.
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        anchors: Sequence[tuple[float, float]],
        stride: int,
        hidden_channels: int = 256,
    ) -> None:
        super().__init__()
        if not anchors or num_classes < 1 or stride < 1:
            raise ConfigError(
                f"YoloAnchorHead needs anchors, num_classes >= 1 and stride >= 1; got {anchors}, "
                f"{num_classes}, {stride}"
            )
        self.num_classes, self.stride = num_classes, int(stride)
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(-1, 2), persistent=False)
        self.conv = ConvNormAct(in_chans, hidden_channels, 3, act=_leaky_relu)
        self.predict = nn.Conv2d(hidden_channels, len(anchors) * (5 + num_classes), 1)
        _fill_confidence_prior(self.predict.bias.view(len(anchors), 5 + num_classes)[:, 4])

    def forward(self, x: Tensor) -> Tensor:
        out = self.predict(self.conv(x))
        n, _, h, w = out.shape
        return out.view(n, len(self.anchors), 5 + self.num_classes, h, w).permute(0, 1, 3, 4, 2)


class MultiScaleYoloHead(nn.Module):
    """One ``YoloAnchorHead`` per chosen backbone stage (YOLOv3 Sec. 2.3: 3 scales × 3 anchors), optionally after a
    feature-pyramid ``neck`` (:mod:`.neck`: ``fpn``, ``pan``; ``neck_channels`` wide).

    ``feature_info_entries`` are the backbone's ``feature_info`` dicts of the chosen stages, finest first
    (only ``num_chs`` and ``reduction`` are read); ``forward`` takes the matching feature maps, in the same
    order, and returns one raw [N, A, h, w, 5 + C] tensor per scale.
    """

    def __init__(
        self,
        feature_info_entries: Sequence[Mapping[str, Any]],
        num_classes: int,
        anchors_per_scale: Sequence[Sequence[tuple[float, float]]],
        hidden_channels: int = 256,
        neck: str = "none",
        neck_channels: int = 128,
    ) -> None:
        super().__init__()
        if len(feature_info_entries) != len(anchors_per_scale):
            raise ConfigError(
                f"{len(anchors_per_scale)} anchor sets for {len(feature_info_entries)} stages; "
                "give one list of anchors per chosen stage"
            )
        channels = [info["num_chs"] for info in feature_info_entries]
        strides = [info["reduction"] for info in feature_info_entries]
        self.neck = build_neck(neck, channels, strides, neck_channels)
        if self.neck is not None:
            channels = [neck_channels] * len(channels)
        self.heads = nn.ModuleList(
            YoloAnchorHead(chs, num_classes, anchors, stride, hidden_channels)
            for chs, stride, anchors in zip(channels, strides, anchors_per_scale, strict=True)
        )

    @property
    def strides(self) -> list[int]:
        return [head.stride for head in self.heads]

    @property
    def anchors(self) -> list[Tensor]:
        return [head.anchors for head in self.heads]

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        if self.neck is not None:
            features = self.neck(features)
        return [head(x) for head, x in zip(self.heads, features, strict=True)]


def shape_iou(wh1: Tensor, wh2: Tensor) -> Tensor:
    """[N, M] IoU of boxes of sizes ``wh1`` [N, 2] and ``wh2`` [M, 2] placed at a common centre (YOLOv2 Sec. 2)."""
    return box_iou(
        torch.cat([torch.zeros_like(wh1), wh1], -1), torch.cat([torch.zeros_like(wh2), wh2], -1), fmt="cxcywh"
    )


def _kmeans_plus_plus(wh: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding with the distance 1 − IoU: each new centroid drawn with probability ∝ distance²."""
    chosen = torch.randint(len(wh), (1,), generator=generator)
    for _ in range(k - 1):
        distance = 1 - shape_iou(wh, wh[chosen]).amax(1)
        drawn = torch.multinomial(distance.square().clamp_min(1e-12), 1, generator=generator)
        chosen = torch.cat([chosen, drawn])
    return wh[chosen]


def kmeans_anchors(wh: Tensor, k: int, iterations: int = 100, seed: int = 0) -> Tensor:
    """YOLOv2 dimension clusters (Redmon & Farhadi 2017, Sec. 2): k-means on box sizes with d = 1 − IoU.

    ``wh`` [N, 2] are box widths and heights; the IoU aligns the boxes at a common centre. Centroids are the
    mean size of their members (an emptied cluster keeps its centroid); seeding is k-means++ with the same
    distance (the paper does not say how it seeds). Returns [k, 2] sorted by area; deterministic for a seed.
    """
    if wh.ndim != 2 or wh.shape[1] != 2:
        raise ConfigError(f"kmeans_anchors expects box sizes of shape [N, 2]; got {tuple(wh.shape)}")
    if k < 1 or len(wh) < k:
        raise ConfigError(f"kmeans_anchors needs k >= 1 and at least k boxes; got k={k} and {len(wh)} boxes")
    wh = wh.detach().float().cpu()
    centroids = _kmeans_plus_plus(wh, k, torch.Generator().manual_seed(seed))
    for _ in range(iterations):
        members = shape_iou(wh, centroids).argmax(1)
        counts = torch.bincount(members, minlength=k).unsqueeze(1)
        sums = torch.zeros_like(centroids).index_add_(0, members, wh)
        updated = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
        if torch.equal(updated, centroids):
            break
        centroids = updated
    return centroids[centroids.prod(1).argsort()]


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


def decode_anchor_boxes(raw: Tensor, anchors: Tensor | Sequence[tuple[float, float]], stride: int) -> Tensor:
    """[N, A, h, w, 4] xyxy input pixels from one scale's raw output (YOLOv2 Sec. 2, "Direct location prediction").

    b_x = (sigmoid(t_x) + c_x) · stride, b_y likewise, b_w = p_w · exp(t_w), b_h = p_h · exp(t_h).
    """
    raw = raw.float()
    _, a, h, w, _ = raw.shape
    anchors = torch.as_tensor(anchors, dtype=raw.dtype, device=raw.device).view(1, a, 1, 1, 2)
    cols = torch.arange(w, device=raw.device, dtype=raw.dtype).view(1, w)
    rows = torch.arange(h, device=raw.device, dtype=raw.dtype).view(h, 1)
    xy = raw[..., :2].sigmoid()
    cx = (xy[..., 0] + cols) * stride
    cy = (xy[..., 1] + rows) * stride
    wh = anchors * raw[..., 2:4].exp()
    return box_convert(torch.stack([cx, cy, wh[..., 0], wh[..., 1]], -1), "cxcywh", "xyxy")


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
