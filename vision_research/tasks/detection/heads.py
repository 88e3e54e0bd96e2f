"""YOLO detection heads on a backbone's stage maps: the v1 grid and the v2/v3 anchor boxes on one or more scales.

**YOLOv1** (Redmon et al. 2016, Sec. 2) — ``YoloV1Head``: an S×S grid on one backbone stage, B boxes with
confidences and one class distribution per cell, an S×S×(5B + C) tensor of raw values (7×7×30 on VOC).

**YOLOv2 / v3** (Redmon & Farhadi 2017, Sec. 2; 2018, Sec. 2.1-2.3) — ``YoloAnchorHead``: per cell and anchor
(prior), (t_x, t_y, t_w, t_h, t_o, C class logits) on one stage; ``MultiScaleYoloHead`` puts one on each chosen
stage (v3: 3 scales × 3 anchors, Sec. 2.3), optionally after a feature-pyramid neck.

:mod:`.box_coding` decodes their outputs. The two heads are used alike by the task: each knows the backbone stages
it reads (``stages``) and takes the backbone's maps (``read``), gives the arguments of its decoding
(``geometry``) and builds the loss that trains it (``build_loss``).

Deviation: the bias of every confidence / objectness output starts at logit(0.01), so that the initial
confidences are ≈0.01 instead of 0.5 — the many empty cells then do not swamp the first updates (as in
RetinaNet's prior initialisation); the papers do not state an initialisation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from ...errors import ConfigError
from ...heads.neck import build_neck
from ...heads.stages import select_stages
from ...models.layers import ConvNormAct
from .loss import YoloAnchorLoss, YoloV1Loss, v1_loss_options

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
    Linear(S·S·(5B + C)). ``stage`` is the backbone stage it reads (an index into ``forward_features``' maps,
    ``in_chans`` its channels). Outputs are raw; :mod:`.box_coding` gives their parameterisation.
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
        stage: int = -1,
    ) -> None:
        super().__init__()
        if grid_size < 1 or num_boxes < 1 or num_classes < 1:
            raise ConfigError(
                f"YoloV1Head needs grid_size, num_boxes, num_classes >= 1; got {grid_size}, {num_boxes}, {num_classes}"
            )
        self.grid_size, self.num_boxes, self.num_classes = grid_size, num_boxes, num_classes
        self.stages = [stage]
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

    @classmethod
    def from_backbone(
        cls, feature_info: Sequence[Mapping[str, Any]], num_classes: int, stage: int = -1, **options: Any
    ) -> YoloV1Head:
        """The head on stage ``stage`` of a backbone with ``feature_info`` (negative: counted from the deepest)."""
        index = stage % len(feature_info)
        return cls(feature_info[index]["num_chs"], num_classes, stage=index, **options)

    def forward(self, x: Tensor) -> Tensor:
        out = self.predict(self.pool(self.conv(x)))
        s = self.grid_size
        if self.fc:
            return out.view(-1, s, s, self.out_channels)
        return out.permute(0, 2, 3, 1)

    def read(self, features: Sequence[Tensor]) -> Tensor:
        """The raw grid from a backbone's stage maps (``forward_features``): the head on the map of its stage."""
        return self(features[self.stages[0]])

    def geometry(self) -> dict[str, Any]:
        """The head's arguments of ``box_coding.decode_detections``: ``num_boxes`` per cell."""
        return {"num_boxes": self.num_boxes}

    def build_loss(self, image_size: int, options: dict[str, Any] | None = None) -> YoloV1Loss:
        """The paper's loss on this grid for inputs of side ``image_size`` (``options``: ``task.loss``)."""
        return YoloV1Loss(self.num_classes, self.grid_size, self.num_boxes, image_size, **v1_loss_options(options))


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
    feature-pyramid ``neck`` (``heads.neck``: ``fpn``, ``pan``; ``neck_channels`` wide).

    ``feature_info`` holds the backbone's ``feature_info`` dicts (only ``num_chs`` and ``reduction`` are read);
    ``strides`` chooses the stages it reads (``stages``: the deepest at each reduction; default every entry), finest
    first, with one list of anchors each in ``anchors_per_scale``. ``forward`` takes the maps of the chosen stages,
    in the same order, and returns one raw [N, A, h, w, 5 + C] tensor per scale.
    """

    def __init__(
        self,
        feature_info: Sequence[Mapping[str, Any]],
        num_classes: int,
        anchors_per_scale: Sequence[Sequence[tuple[float, float]]],
        strides: Sequence[int] | None = None,
        hidden_channels: int = 256,
        neck: str = "none",
        neck_channels: int = 128,
    ) -> None:
        super().__init__()
        self.stages = list(range(len(feature_info))) if strides is None else select_stages(feature_info, strides)
        if len(self.stages) != len(anchors_per_scale):
            raise ConfigError(
                f"{len(anchors_per_scale)} anchor sets for {len(self.stages)} stages; "
                "give one list of anchors per chosen stage"
            )
        self.num_classes = num_classes
        channels = [feature_info[i]["num_chs"] for i in self.stages]
        strides = [feature_info[i]["reduction"] for i in self.stages]
        self.neck = build_neck(neck, channels, strides, neck_channels)
        if self.neck is not None:
            channels = [neck_channels] * len(channels)
        self.heads = nn.ModuleList(
            YoloAnchorHead(chs, num_classes, anchors, stride, hidden_channels)
            for chs, stride, anchors in zip(channels, strides, anchors_per_scale, strict=True)
        )

    @classmethod
    def from_backbone(
        cls,
        feature_info: Sequence[Mapping[str, Any]],
        num_classes: int,
        strides: Sequence[int] = (32,),
        anchors: Sequence[Sequence[Sequence[float]]] | str | None = None,
        anchors_per_scale: int = 3,
        **options: Any,
    ) -> MultiScaleYoloHead:
        """The head on the stages at ``strides`` with ``anchors`` (one list of [w, h] per stride) from ``task.head``;
        ``anchors_per_scale`` is how many k-means anchors ``anchors: kmeans`` resolves to (``options_from_data``)."""
        if not isinstance(anchors, list | tuple) or len(anchors) != len(strides):
            raise ConfigError(
                f"task.head.anchors must hold one list of [w, h] per stride {list(strides)} (or 'kmeans', resolved "
                f"from the training boxes when the run starts); got {anchors!r}"
            )
        return cls(feature_info, num_classes, anchors, strides=strides, **options)

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

    def read(self, features: Sequence[Tensor]) -> list[Tensor]:
        """The raw outputs from a backbone's stage maps (``forward_features``): the head on the maps of its stages."""
        return self([features[i] for i in self.stages])

    def geometry(self) -> dict[str, Any]:
        """The head's arguments of ``box_coding.decode_detections``: ``anchors`` ([A, 2] per scale) and ``strides``."""
        return {"anchors": self.anchors, "strides": self.strides}

    def build_loss(self, image_size: int, options: dict[str, Any] | None = None) -> YoloAnchorLoss:
        """The v2/v3 loss on these scales and anchors (``options``: ``task.loss``; the input size is not needed)."""
        anchors = [scale.tolist() for scale in self.anchors]
        return YoloAnchorLoss(self.num_classes, anchors, self.strides, **(options or {}))
