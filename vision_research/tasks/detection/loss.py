"""YOLO losses: the v1 sum-squared loss and the v2/v3 anchor loss, vectorised over boxes, computed in fp32.

Both take the raw head outputs (see :mod:`.box_coding` for the parameterisation) and targets
following torchvision: one dict per image with ``boxes`` FloatTensor[N, 4] xyxy pixels of the network input
and ``labels`` Int64Tensor[N] in 0..C-1. Crowd boxes (``iscrowd`` True) and degenerate boxes (zero width or
height) are removed before assignment; images without objects are legal.

Both return ``{"loss", "loss_xy", "loss_wh", "loss_obj", "loss_noobj", "loss_cls"}`` (the anchor loss with an
IoU-family ``box_loss``: ``loss_box`` in place of ``loss_xy`` and ``loss_wh``): each term already multiplied by
its λ, **summed over the batch and divided by the batch size** (number of images), and ``loss`` their sum.
Autocast is switched off inside and the raw outputs are cast to fp32.

When several objects fall on the same predictor (v1: the same cell; v2/v3: the same cell and anchor), the
one with the **largest box area** is kept (ties: the first in the target list) and the others are dropped —
the papers keep one without saying which.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import (
    box_convert,
    box_iou,
    complete_box_iou_loss,
    distance_box_iou_loss,
    generalized_box_iou_loss,
)

from ...errors import ConfigError
from ...registry import keyword_defaults
from .anchors import shape_iou
from .box_coding import anchor_boxes, decode_anchor_boxes, v1_cell_boxes

CONFIDENCE_TARGETS = ("iou", "one")
# 1 − GIoU (Rezatofighi et al. 2019, Alg. 2), 1 − DIoU and 1 − CIoU (Zheng et al. 2020, eqs. 6 and 10), from
# torchvision.ops; "mse": the papers' squared errors on the offsets and log sizes.
BOX_LOSSES = {"giou": generalized_box_iou_loss, "diou": distance_box_iou_loss, "ciou": complete_box_iou_loss}


def flatten_targets(targets: Sequence[dict[str, Tensor]], device: torch.device | str) -> tuple[Tensor, Tensor, Tensor]:
    """(image index [T], boxes [T, 4] xyxy fp32, labels [T]) of every kept object of the batch, in image order.

    Crowd boxes and boxes of zero width or height are removed.
    """
    counts = torch.tensor([len(t["boxes"]) for t in targets], device=device)
    image = torch.repeat_interleave(torch.arange(len(targets), device=device), counts)
    boxes = torch.cat([t["boxes"].to(device, torch.float32).reshape(-1, 4) for t in targets])
    labels = torch.cat([t["labels"].to(device, torch.int64).reshape(-1) for t in targets])
    crowd = torch.cat([t.get("iscrowd", torch.zeros(len(t["boxes"]))).to(device, torch.bool) for t in targets])
    keep = ~crowd & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return image[keep], boxes[keep], labels[keep]


def one_per_key(key: Tensor, priority: Tensor) -> Tensor:
    """Indices of the entry with the highest ``priority`` for each distinct ``key`` (ties: the lowest index).

    Vectorised by two stable sorts: by priority (descending), then by key; the first entry of each key wins.
    """
    order = priority.argsort(descending=True, stable=True)
    order = order[key[order].argsort(stable=True)]
    sorted_key = key[order]
    first = torch.ones_like(sorted_key, dtype=torch.bool)
    first[1:] = sorted_key[1:] != sorted_key[:-1]
    return order[first]


def _loss_dict(batch_size: int, **terms: Tensor) -> dict[str, Tensor]:
    """The per-image terms (each divided by ``batch_size``) and their sum as ``loss``."""
    out = {f"loss_{name}": value / batch_size for name, value in terms.items()}
    return {"loss": sum(out.values()), **out}


class YoloV1Loss(nn.Module):
    """The YOLOv1 sum-squared loss (Redmon et al. 2016, Sec. 2.2, eq. 3).

    The cell holding an object's centre is responsible for it; of the cell's B boxes the one with the highest
    IoU with the ground truth (under the current predictions; ties: the lower index) is the responsible
    predictor 𝟙_ij^obj. Terms (per image, then averaged over the batch):

    - ``loss_xy`` = λ_coord Σ 𝟙_ij^obj [(σ(t_x) − x̂)² + (σ(t_y) − ŷ)²], x̂, ŷ the centre's offset in its cell;
    - ``loss_wh`` = λ_coord Σ 𝟙_ij^obj [(σ(t_w) − √ŵ)² + (σ(t_h) − √ĥ)²], ŵ, ĥ fractions of the image
      (σ(t_w) is the predicted √w);
    - ``loss_obj`` = Σ 𝟙_ij^obj (σ(t_c) − Ĉ)², Ĉ = IoU(predicted box, truth) detached (the paper's target,
      ``confidence_target="iou"``) or 1 (``"one"``);
    - ``loss_noobj`` = λ_noobj Σ 𝟙_ij^noobj σ(t_c)², over every box that is not responsible — including the
      other boxes of a cell that holds an object;
    - ``loss_cls`` = Σ_i 𝟙_i^obj Σ_c (p_i(c) − p̂_i(c))², softmax class probabilities against the one-hot
      label, only in cells that hold an object (as in the paper's eq. 3).

    ``image_size`` is the side of the square input whose pixels the targets' boxes are in (448 in the paper, Sec.
    2.2); the S×S grid divides it.
    """

    def __init__(
        self,
        num_classes: int,
        grid_size: int = 7,
        num_boxes: int = 2,
        image_size: int = 448,
        lambda_coord: float = 5.0,
        lambda_noobj: float = 0.5,
        confidence_target: str = "iou",
    ) -> None:
        super().__init__()
        if confidence_target not in CONFIDENCE_TARGETS:
            raise ConfigError(f"confidence_target must be one of {CONFIDENCE_TARGETS}; got '{confidence_target}'")
        self.num_classes, self.grid_size, self.num_boxes = num_classes, grid_size, num_boxes
        self.image_size = image_size
        self.lambda_coord, self.lambda_noobj = lambda_coord, lambda_noobj
        self.confidence_target = confidence_target

    def forward(self, raw: Tensor, targets: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
        s, b = self.grid_size, self.num_boxes
        expected = (len(targets), s, s, 5 * b + self.num_classes)
        if tuple(raw.shape) != expected:
            raise ValueError(f"YoloV1Loss expects raw outputs of shape {expected}; got {tuple(raw.shape)}")
        with torch.autocast(device_type=raw.device.type, enabled=False):
            return self._loss(raw.float(), targets)

    def _loss(self, raw: Tensor, targets: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
        s, b = self.grid_size, self.num_boxes
        image, boxes, labels = flatten_targets(targets, raw.device)
        truth = box_convert(boxes, "xyxy", "cxcywh") / self.image_size
        cell = (truth[:, :2] * s).floor().clamp(0, s - 1).long()
        kept = one_per_key((image * s + cell[:, 1]) * s + cell[:, 0], truth[:, 2] * truth[:, 3])
        image, truth, labels, col, row = image[kept], truth[kept], labels[kept], cell[kept, 0], cell[kept, 1]

        box = raw[..., : 5 * b].unflatten(-1, (b, 5))
        cell_boxes = box[image, row, col]  # [M, B, 5]
        with torch.no_grad():
            predicted = v1_cell_boxes(cell_boxes, col[:, None], row[:, None], s)
            iou = box_iou(predicted, truth[:, None], fmt="cxcywh")[..., 0]  # [M, B]
        best = iou.argmax(1)
        responsible = torch.zeros(box.shape[:4], dtype=torch.bool, device=raw.device)
        responsible[image, row, col, best] = True
        pred = cell_boxes[torch.arange(len(best), device=raw.device), best]  # [M, 5]

        offset = truth[:, :2] * s - torch.stack([col, row], 1)
        confidence = iou.gather(1, best[:, None])[:, 0]
        if self.confidence_target == "one":
            confidence = torch.ones_like(confidence)
        class_probs = raw[image, row, col, 5 * b :].softmax(-1)
        return _loss_dict(
            len(targets),
            xy=self.lambda_coord * (pred[:, :2].sigmoid() - offset).square().sum(),
            wh=self.lambda_coord * (pred[:, 2:4].sigmoid() - truth[:, 2:].sqrt()).square().sum(),
            obj=(pred[:, 4].sigmoid() - confidence).square().sum(),
            noobj=self.lambda_noobj * box[..., 4].sigmoid()[~responsible].square().sum(),
            cls=(class_probs - F.one_hot(labels, self.num_classes)).square().sum(),
        )


class AnchorTargets(NamedTuple):
    """The positives of one scale (YOLOv3 Sec. 2.1): where they are and what they should predict."""

    image: Tensor  # [M] image index
    anchor: Tensor  # [M] anchor index within the scale
    row: Tensor  # [M] cell row (c_y)
    col: Tensor  # [M] cell column (c_x)
    xy: Tensor  # [M, 2] targets of σ(t_x), σ(t_y): the centre's offset in its cell
    wh: Tensor  # [M, 2] targets of t_w, t_h: log(box size / anchor size)
    labels: Tensor  # [M]
    boxes: Tensor  # [M, 4] the ground truths, xyxy input pixels (for the IoU-family box losses)


class YoloAnchorLoss(nn.Module):
    """The YOLOv2/v3 loss over one raw output per scale (Redmon & Farhadi 2017 Sec. 2; 2018 Sec. 2.1-2.2).

    Assignment: each ground truth goes to the one anchor, over all scales, whose shape best matches its own
    (IoU of the sizes at a common centre), at the cell of that scale holding its centre (v3 Sec. 2.1: "one
    bounding box prior for each ground truth object"). Terms (per image, then averaged over the batch):

    - ``loss_xy`` = λ_coord Σ_pos [(σ(t_x) − x̂)² + (σ(t_y) − ŷ)²]: sum of squared errors on the sigmoid
      offsets, as v3 (Sec. 2.1 "sum of squared error loss"; Darknet's yolo layer);
    - ``loss_wh`` = λ_coord Σ_pos [(t_w − log(w / p_w))² + (t_h − log(h / p_h))²], in log space;
    - ``loss_obj`` = Σ_pos BCE(t_o, 1);
    - ``loss_noobj`` = λ_noobj Σ BCE(t_o, 0) over the non-positive predictions, except those whose decoded
      box has IoU > ``ignore_iou`` with a ground truth of their image (ignored, v3 Sec. 2.1);
    - ``loss_cls`` = Σ_pos Σ_c BCE(class logit_c, one-hot_c): independent logistic classifiers (v3 Sec. 2.2).

    ``box_loss`` = ``giou`` / ``diou`` / ``ciou`` replaces ``loss_xy`` and ``loss_wh`` by ``loss_box`` = λ_box
    Σ_pos (1 − IoU-family(decoded box, ground truth)), one term on the whole box in pixels, as YOLOv4 (Bochkovskiy
    et al. 2020, Sec. 3.4: CIoU) and later detectors do; ``mse`` (the default) keeps the papers' terms.
    ``assign_iou`` = t also makes every other anchor whose shape IoU with a ground truth exceeds t a positive for it
    (YOLOv4 Sec. 3.4, "using multiple anchors for a single ground truth"); ``None`` keeps v3's one anchor.

    ``anchors`` holds one list of (w, h) input pixels per scale and ``strides`` the scales' reductions, in the
    order of the raw outputs.
    """

    def __init__(
        self,
        num_classes: int,
        anchors: Sequence[Sequence[tuple[float, float]]],
        strides: Sequence[int],
        lambda_coord: float = 5.0,
        lambda_noobj: float = 0.5,
        ignore_iou: float = 0.5,
        box_loss: str = "mse",
        lambda_box: float = 5.0,
        assign_iou: float | None = None,
    ) -> None:
        super().__init__()
        if box_loss != "mse" and box_loss not in BOX_LOSSES:
            raise ConfigError(f"task.loss.box_loss must be one of mse, {', '.join(BOX_LOSSES)}; got {box_loss!r}")
        if assign_iou is not None and not 0 < assign_iou < 1:
            raise ConfigError(f"task.loss.assign_iou must be in (0, 1) or null; got {assign_iou}")
        self.box_loss, self.lambda_box, self.assign_iou = box_loss, lambda_box, assign_iou
        if len(anchors) != len(strides) or not all(anchors):
            raise ConfigError(
                f"YoloAnchorLoss needs one non-empty anchor list per stride; got {len(anchors)} "
                f"anchor lists for {len(strides)} strides"
            )
        self.num_classes, self.strides = num_classes, [int(stride) for stride in strides]
        self.lambda_coord, self.lambda_noobj, self.ignore_iou = lambda_coord, lambda_noobj, ignore_iou
        self.num_anchors = [len(scale) for scale in anchors]
        self.register_buffer(
            "anchors", torch.tensor([list(a) for scale in anchors for a in scale]).float(), persistent=False
        )
        counts = torch.tensor(self.num_anchors)
        self.register_buffer(
            "anchor_scale", torch.repeat_interleave(torch.arange(len(counts)), counts), persistent=False
        )
        self.register_buffer("anchor_index", torch.cat([torch.arange(n) for n in self.num_anchors]), persistent=False)

    def assign(
        self, image: Tensor, boxes: Tensor, labels: Tensor, grid_sizes: Sequence[tuple[int, int]]
    ) -> list[AnchorTargets]:
        """The positives of each scale from ``flatten_targets``' output; ``grid_sizes`` are the (h, w) per scale."""
        device = boxes.device
        truth = box_convert(boxes, "xyxy", "cxcywh")
        similarity = shape_iou(truth[:, 2:], self.anchors.to(device))  # [T, all anchors]
        chosen = F.one_hot(similarity.argmax(1), similarity.shape[1]).bool()  # v3: the best-shaped anchor
        if self.assign_iou is not None:
            chosen |= similarity > self.assign_iou
        which, best = chosen.nonzero(as_tuple=True)  # one row per (ground truth, anchor) pair
        image, truth, labels = image[which], truth[which], labels[which]
        scale, anchor = self.anchor_scale.to(device)[best], self.anchor_index.to(device)[best]
        return [
            self._assign_scale(s, image[scale == s], truth[scale == s], labels[scale == s], anchor[scale == s], size)
            for s, size in enumerate(grid_sizes)
        ]

    def _assign_scale(
        self, s: int, image: Tensor, truth: Tensor, labels: Tensor, anchor: Tensor, grid_size: tuple[int, int]
    ) -> AnchorTargets:
        """Cells, offsets and log-size targets of the ground truths (cxcywh pixels) assigned to scale ``s``."""
        h, w = grid_size
        centre = truth[:, :2] / self.strides[s]
        col = centre[:, 0].floor().clamp(0, w - 1).long()
        row = centre[:, 1].floor().clamp(0, h - 1).long()
        key = ((image * self.num_anchors[s] + anchor) * h + row) * w + col
        kept = one_per_key(key, truth[:, 2] * truth[:, 3])
        image, truth, labels, anchor, col, row = (
            image[kept],
            truth[kept],
            labels[kept],
            anchor[kept],
            col[kept],
            row[kept],
        )
        scale_anchors = self.anchors[self.anchor_scale == s].to(truth.device)
        return AnchorTargets(
            image=image,
            anchor=anchor,
            row=row,
            col=col,
            xy=centre[kept] - torch.stack([col, row], 1),
            wh=(truth[:, 2:] / scale_anchors[anchor]).log(),
            labels=labels,
            boxes=box_convert(truth, "cxcywh", "xyxy"),
        )

    def forward(self, raws: Sequence[Tensor], targets: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
        if len(raws) != len(self.strides):
            raise ValueError(f"YoloAnchorLoss expects {len(self.strides)} raw outputs; got {len(raws)}")
        for raw, num_anchors in zip(raws, self.num_anchors, strict=True):
            if raw.ndim != 5 or raw.shape[1] != num_anchors or raw.shape[-1] != 5 + self.num_classes:
                raise ValueError(
                    f"YoloAnchorLoss expects raw outputs [N, {num_anchors}, h, w, "
                    f"{5 + self.num_classes}]; got {tuple(raw.shape)}"
                )
        with torch.autocast(device_type=raws[0].device.type, enabled=False):
            return self._loss([raw.float() for raw in raws], targets)

    def _loss(self, raws: list[Tensor], targets: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
        image, boxes, labels = flatten_targets(targets, raws[0].device)
        positives = self.assign(image, boxes, labels, [tuple(raw.shape[2:4]) for raw in raws])
        padded, valid = _padded_boxes(image, boxes, len(targets))
        box_terms = ("xy", "wh") if self.box_loss == "mse" else ("box",)
        terms = dict.fromkeys((*box_terms, "obj", "noobj", "cls"), raws[0].new_zeros(()))
        for s, (raw, pos) in enumerate(zip(raws, positives, strict=True)):
            pred = raw[pos.image, pos.anchor, pos.row, pos.col]  # [M, 5 + C]
            if self.box_loss == "mse":
                terms["xy"] = terms["xy"] + (pred[:, :2].sigmoid() - pos.xy).square().sum()
                terms["wh"] = terms["wh"] + (pred[:, 2:4] - pos.wh).square().sum()
            else:
                boxes = self._decoded(pred, pos, s)
                terms["box"] = terms["box"] + BOX_LOSSES[self.box_loss](boxes, pos.boxes, reduction="sum")
            terms["obj"] = terms["obj"] + F.binary_cross_entropy_with_logits(
                pred[:, 4], torch.ones_like(pred[:, 4]), reduction="sum"
            )
            one_hot = F.one_hot(pos.labels, self.num_classes).float()
            terms["cls"] = terms["cls"] + F.binary_cross_entropy_with_logits(pred[:, 5:], one_hot, reduction="sum")
            negative = ~self._ignored(raw, s, padded, valid)
            negative[pos.image, pos.anchor, pos.row, pos.col] = False
            objectness = raw[..., 4][negative]
            terms["noobj"] = terms["noobj"] + F.binary_cross_entropy_with_logits(
                objectness, torch.zeros_like(objectness), reduction="sum"
            )
        for name in box_terms:
            terms[name] = (self.lambda_coord if self.box_loss == "mse" else self.lambda_box) * terms[name]
        terms["noobj"] = self.lambda_noobj * terms["noobj"]
        return _loss_dict(len(targets), **terms)

    def _decoded(self, pred: Tensor, pos: AnchorTargets, s: int) -> Tensor:
        """[M, 4] xyxy input pixels of the positives' predictions at scale ``s`` (``anchor_boxes``, as the grid's)."""
        anchors = self.anchors[self.anchor_scale == s].to(pred.device)[pos.anchor]
        return anchor_boxes(pred[:, :4], torch.stack([pos.col, pos.row], 1), anchors, self.strides[s])

    @torch.no_grad()
    def _ignored(self, raw: Tensor, s: int, padded: Tensor, valid: Tensor) -> Tensor:
        """[N, A, h, w]: predictions whose decoded box has IoU > ignore_iou with a ground truth of their image."""
        anchors = self.anchors[self.anchor_scale == s].to(raw.device)
        predicted = decode_anchor_boxes(raw, anchors, self.strides[s])
        iou = box_iou(predicted.flatten(1, 3), padded).masked_fill(~valid[:, None, :], 0)  # [N, A·h·w, G]
        return (iou.amax(-1) > self.ignore_iou).view(raw.shape[:4])


def _padded_boxes(image: Tensor, boxes: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
    """([N, G, 4] boxes per image, zero-padded, and their [N, G] validity) from image-sorted flat boxes; G >= 1."""
    counts = torch.bincount(image, minlength=batch_size)
    slot = torch.arange(len(image), device=image.device) - (counts.cumsum(0) - counts)[image]
    size = max(int(counts.max()), 1)
    padded = boxes.new_zeros(batch_size, size, 4)
    valid = torch.zeros(batch_size, size, dtype=torch.bool, device=boxes.device)
    padded[image, slot] = boxes
    valid[image, slot] = True
    return padded, valid


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
