"""Anchor boxes (priors) of the YOLOv2/v3 head: YOLOv3's COCO clusters and YOLOv2's dimension clusters of a data set.

J. Redmon, A. Farhadi, "YOLO9000: Better, Faster, Stronger", CVPR 2017, Sec. 2 ("Dimension Clusters"): k-means on
the training boxes' sizes with the distance d = 1 − IoU, the boxes aligned at a common centre; "YOLOv3: An
Incremental Improvement", 2018, Sec. 2.3: 9 clusters, 3 per scale, the smallest at the finest stride.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchvision.ops import box_iou

from ...errors import ConfigError
from ...geometry import letterbox_geometry

# The 9 COCO dimension clusters of YOLOv3 (Sec. 2.3), in pixels of a 416×416 input, finest scale first.
YOLOV3_ANCHORS: list[list[tuple[float, float]]] = [
    [(10, 13), (16, 30), (33, 23)],
    [(30, 61), (62, 45), (59, 119)],
    [(116, 90), (156, 198), (373, 326)],
]


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
