"""MobileNet v1 and v2 (Géron ch. 14; Michelucci ch. 4), plus the inverted-residual network that EfficientNet
also builds on.

``mobilenet_v1`` — A. G. Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile
Vision Applications", arXiv 2017 (§3.1-3.2, Table 1):

    In 3×224×224 ─ conv 3×3 32 /2 ─ 13 depthwise-separable units ─ global avg pool ─ fc 1000
    unit = 3×3 depthwise conv ─ BN ─ ReLU ─ 1×1 pointwise conv ─ BN ─ ReLU (Fig. 3)
    units (out channels / stride): 64/1 │ 128/2 128/1 │ 256/2 256/1 │ 512/2 512/1 ×5 │ 1024/2 1024/1

    - width multiplier α (``width_mult``, §3.3) on every layer's channels, rounded with ``make_divisible(·, 8)``
      like timm. This is the same as the paper's int(α·c) for its α ∈ {1, 0.75, 0.5, 0.25}. The resolution
      multiplier ρ is just the input size;
    - Table 1's last "Conv dw / s2" maps 7×7 to 7×7, so its stride is a typo for 1. The released code and
      timm use stride 1, and so does this file;
    - ``act="relu"`` is the paper's unit. ``act="relu6"`` is what timm's ``mobilenetv1_100`` and the
      released TF-slim code use. Activations have no parameters, so both have **4,231,976** parameters
      (the paper's 4.2 M, Table 8). The count is checked by hand in the tests and against timm's
      ``mobilenetv1_100``, which has the same layout: stem, 5 stages of [1, 2, 2, 6, 2] units, no head
      conv, fc. With ``act="relu6"``, timm's weights load by position and give the same outputs;
    - ``depth_mult`` (not in the paper) multiplies the units per stage (ceil) for compound scaling.

``mobilenet_v2`` — M. Sandler, A. Howard, M. Zhu, A. Zhmoginov, L.-C. Chen, "MobileNetV2: Inverted Residuals
and Linear Bottlenecks", CVPR 2018 (§3-4, Table 1-2):

    In 3×224×224 ─ conv 3×3 32 /2 ─ 7 stages of bottlenecks (t, c, n, s of Table 2) ─ conv 1×1 1280
               ─ global avg pool ─ dropout 0.2 ─ fc 1000
    bottleneck = 1×1 expand ×t ─ BN ─ ReLU6 ─ 3×3 depthwise /s ─ BN ─ ReLU6 ─ 1×1 project ─ BN (linear),
                 + identity shortcut when s = 1 and the channels match

    Table 2's final "conv2d 1×1, k" is a linear classifier on the pooled 1280 features, which is the fc here.
    The paper gives no dropout. 0.2 is torchvision's value (the TF-slim code keeps 0.8, the same thing). Width
    multiplier as in the paper and torchvision: every layer ``make_divisible(c·α, 8)``, except the last
    1×1 conv, which is only widened (1280·max(1, α)). Parameter count = torchvision's ``mobilenet_v2``,
    **3,504,872**. Its weights load by position and give the same outputs (tests).

Both networks report stages at the last block of each resolution: reductions 2, 4, 8, 16, 32. For v2 these
are the bottleneck stages' outputs (16, 24, 32, 96, 320 channels, as timm's ``features_only``). The 1×1
1280 conv belongs to the classification head (``forward_head``), so detection and segmentation heads get
the 320 bottleneck maps and not the 1280-wide classifier features.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from ..constants import dataset_stats
from .base import Backbone, default_cfg, feature_info
from .layers import ConvNormAct, DropPath, SEModule
from .registry import Variant, register_variants
from .scaling import check_multipliers, scale_depths, scale_widths

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "relu6": nn.ReLU6}


def last_block_per_resolution(strides: Sequence[int]) -> list[int]:
    """Indices of the stages after which the resolution changes next (or the network ends)."""
    return [i for i in range(len(strides)) if i == len(strides) - 1 or strides[i + 1] != 1]


def stage_reductions(strides: Sequence[int], stem_stride: int = 2) -> list[int]:
    """Cumulative stride at the output of each stage."""
    return [stem_stride * math.prod(strides[: i + 1]) for i in range(len(strides))]


# ---------------------------------------------------------------------------------------------- MobileNet v1


class DepthwiseSeparableConv(nn.Sequential):
    """MobileNet v1's unit (Fig. 3 right): 3×3 depthwise conv-BN-act, then 1×1 pointwise conv-BN-act.

    Unlike ``layers.SeparableConv2d`` (Xception), each half has its own BN and activation.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__(
            OrderedDict(
                dw=ConvNormAct(in_chs, in_chs, 3, stride, groups=in_chs, act=act),
                pw=ConvNormAct(in_chs, out_chs, 1, act=act),
            )
        )


# Table 1 grouped by resolution: (output channels, stride of the first unit, units).
MOBILENET_V1_STAGES: tuple[tuple[int, int, int], ...] = (
    (64, 1, 1),
    (128, 2, 2),
    (256, 2, 2),
    (512, 2, 6),
    (1024, 2, 2),
)
MOBILENET_V1_STEM = 32


class MobileNetV1(Backbone):
    """MobileNet v1 (Howard et al. 2017); see the module docstring."""

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        act: str = "relu",
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if act not in ACTIVATIONS:
            raise ValueError(f"MobileNetV1 act={act!r}: choose one of {', '.join(ACTIVATIONS)}")
        check_multipliers("MobileNetV1", width_mult, depth_mult)
        act_layer = ACTIVATIONS[act]
        self.num_classes, self.drop_rate = num_classes, drop_rate
        self.stage_widths = scale_widths([c for c, _, _ in MOBILENET_V1_STAGES], width_mult)
        self.stage_depths = scale_depths([n for _, _, n in MOBILENET_V1_STAGES], depth_mult)
        strides = [s for _, s, _ in MOBILENET_V1_STAGES]
        stem_chs = scale_widths([MOBILENET_V1_STEM], width_mult)[0]
        self.stem = ConvNormAct(in_chans, stem_chs, 3, stride=2, act=act_layer)
        stages, in_chs = [], stem_chs
        for out_chs, stride, depth in zip(self.stage_widths, strides, self.stage_depths, strict=True):
            units = [
                DepthwiseSeparableConv(in_chs if i == 0 else out_chs, out_chs, stride if i == 0 else 1, act_layer)
                for i in range(depth)
            ]
            stages.append(nn.Sequential(*units))
            in_chs = out_chs
        self.blocks = nn.Sequential(*stages)
        self.num_features = in_chs
        self.drop = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(in_chs, num_classes)
        self.feature_info = [
            feature_info(c, r, f"blocks.{i}")
            for i, (c, r) in enumerate(zip(self.stage_widths, stage_reductions(strides), strict=True))
        ]
        self.default_cfg = default_cfg(
            (in_chans, 224, 224), *dataset_stats("imagenet", in_chans), num_classes, "stem.conv", "classifier"
        )
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for stage in self.blocks:
            x = stage(x)
            features.append(x)
        return features

    def forward_head(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.drop(features[-1].mean((2, 3))))

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes).to(self.classifier.weight.device)
        init_weights(self.classifier)
        self.default_cfg["num_classes"] = num_classes


def init_weights(module: nn.Module, linear: str = "normal") -> None:
    """He-normal (fan-out) convs, BN γ=1 β=0; the classifier N(0, 0.01), or U(±1/√out) for ``linear="uniform"``.

    These are torchvision's MobileNetV2 / EfficientNet initialisations. The EfficientNet one is also the
    released TF code's.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            if linear == "uniform":
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
            else:
                nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


# ------------------------------------------------------------------------- inverted residuals (v2, EfficientNet)


class StageSpec(NamedTuple):
    """One row of MobileNetV2's Table 2 / EfficientNet's Table 1: a stage of ``repeats`` identical blocks."""

    expand_ratio: int  # t
    kernel_size: int
    stride: int  # of the first block
    out_chs: int  # c
    repeats: int  # n


def scale_stages(stages: Sequence[StageSpec], width_mult: float, depth_mult: float) -> list[StageSpec]:
    """``stages`` with each stage's channels and repeats scaled by the multipliers (``scaling`` rounds them)."""
    widths = scale_widths([s.out_chs for s in stages], width_mult)
    depths = scale_depths([s.repeats for s in stages], depth_mult)
    return [s._replace(out_chs=c, repeats=n) for s, c, n in zip(stages, widths, depths, strict=True)]


class InvertedResidual(nn.Module):
    """Inverted residual with linear bottleneck (MobileNetV2 §3.3), a.k.a. MBConv (MnasNet, EfficientNet).

    1×1 expand ×t (omitted when t = 1) ─ k×k depthwise /s ─ [squeeze-excite] ─ 1×1 linear projection, plus
    the identity when the stride is 1 and the channels match (then with stochastic depth on the residual
    branch). Children ``expand``, ``dw``, ``se``, ``project`` are registered in the reference order.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 3,
        stride: int = 1,
        expand_ratio: int = 6,
        act: type[nn.Module] = nn.ReLU6,
        se_ratio: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        mid_chs = in_chs * expand_ratio
        self.has_shortcut = stride == 1 and in_chs == out_chs
        self.expand = ConvNormAct(in_chs, mid_chs, 1, act=act) if expand_ratio != 1 else nn.Identity()
        self.dw = ConvNormAct(mid_chs, mid_chs, kernel_size, stride, groups=mid_chs, act=act)
        # SE squeezes to se_ratio × the block's *input* channels (released EfficientNet code, torchvision).
        se_chs = max(1, int(in_chs * se_ratio))
        self.se = SEModule(mid_chs, rd_channels=se_chs, act_layer=nn.SiLU) if se_ratio > 0 else nn.Identity()
        self.project = ConvNormAct(mid_chs, out_chs, 1, act=None)
        self.drop_path = DropPath(drop_path_rate) if self.has_shortcut and drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.dw(self.expand(x))))
        return x + self.drop_path(out) if self.has_shortcut else out


class InvertedResidualNet(Backbone):
    """stem conv 3×3 /2 ─ stages of ``InvertedResidual`` ─ 1×1 head conv ─ avg pool ─ dropout ─ fc.

    ``stages`` are already scaled (channels, repeats); the subclasses apply their family's scaling rules.
    The stochastic-depth rate grows linearly with the block index: ``drop_path_rate · i / n_blocks``.
    """

    def __init__(
        self,
        stages: Sequence[StageSpec],
        num_classes: int = 1000,
        in_chans: int = 3,
        stem_chs: int = 32,
        head_chs: int = 1280,
        act: type[nn.Module] = nn.ReLU6,
        se_ratio: float = 0.0,
        drop_rate: float = 0.2,
        drop_path_rate: float = 0.0,
        image_size: int = 224,
        linear_init: str = "normal",
        **cfg_extra: object,
    ) -> None:
        super().__init__()
        self.num_classes, self.drop_rate, self.drop_path_rate = num_classes, drop_rate, drop_path_rate
        self.stage_widths = [s.out_chs for s in stages]
        self.stage_depths = [s.repeats for s in stages]
        self.stem = ConvNormAct(in_chans, stem_chs, 3, stride=2, act=act)
        n_blocks, block_idx, in_chs, blocks = sum(self.stage_depths), 0, stem_chs, []
        for spec in stages:
            stage = []
            for i in range(spec.repeats):
                rate = drop_path_rate * block_idx / n_blocks
                stride = spec.stride if i == 0 else 1
                block = InvertedResidual(
                    in_chs, spec.out_chs, spec.kernel_size, stride, spec.expand_ratio, act, se_ratio, rate
                )
                stage.append(block)
                in_chs, block_idx = spec.out_chs, block_idx + 1
            blocks.append(nn.Sequential(*stage))
        self.blocks = nn.Sequential(*blocks)
        self.conv_head = ConvNormAct(in_chs, head_chs, 1, act=act)
        self.num_features = head_chs
        self.drop = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(head_chs, num_classes)
        strides = [s.stride for s in stages]
        self.feature_stages = last_block_per_resolution(strides)
        reductions = stage_reductions(strides)
        self.feature_info = [
            feature_info(self.stage_widths[i], reductions[i], f"blocks.{i}") for i in self.feature_stages
        ]
        self.default_cfg = default_cfg(
            (in_chans, image_size, image_size),
            *dataset_stats("imagenet", in_chans),
            num_classes,
            "stem.conv",
            "classifier",
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            **cfg_extra,
        )
        self.linear_init = linear_init
        init_weights(self, linear_init)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for i, stage in enumerate(self.blocks):
            x = stage(x)
            if i in self.feature_stages:
                features.append(x)
        return features

    def forward_head(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.drop(self.conv_head(features[-1]).mean((2, 3))))

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes).to(self.classifier.weight.device)
        init_weights(self.classifier, self.linear_init)
        self.default_cfg["num_classes"] = num_classes


# ---------------------------------------------------------------------------------------------- MobileNet v2

# Table 2: t, kernel, s, c, n.
MOBILENET_V2_STAGES: tuple[StageSpec, ...] = (
    StageSpec(1, 3, 1, 16, 1),
    StageSpec(6, 3, 2, 24, 2),
    StageSpec(6, 3, 2, 32, 3),
    StageSpec(6, 3, 2, 64, 4),
    StageSpec(6, 3, 1, 96, 3),
    StageSpec(6, 3, 2, 160, 3),
    StageSpec(6, 3, 1, 320, 1),
)
MOBILENET_V2_STEM, MOBILENET_V2_HEAD = 32, 1280


class MobileNetV2(InvertedResidualNet):
    """MobileNetV2 (Sandler et al. 2018); see the module docstring."""

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        drop_rate: float = 0.2,
    ) -> None:
        check_multipliers("MobileNetV2", width_mult, depth_mult)
        super().__init__(
            scale_stages(MOBILENET_V2_STAGES, width_mult, depth_mult),
            num_classes,
            in_chans,
            stem_chs=scale_widths([MOBILENET_V2_STEM], width_mult)[0],
            head_chs=scale_widths([MOBILENET_V2_HEAD], max(1.0, width_mult))[0],  # "all layers except the very last"
            act=nn.ReLU6,
            drop_rate=drop_rate,
        )


# The variants: one per class, nothing fixed (name → description) ------------------------------------------------------
register_variants(
    MobileNetV1,
    {"mobilenet_v1": Variant({}, "MobileNet v1 (Howard et al. 2017, Table 1): 4,231,976 parameters at α = 1.")},
)
register_variants(
    MobileNetV2,
    {
        "mobilenet_v2": Variant(
            {}, "MobileNetV2 (Sandler et al. 2018, Table 2), torchvision-compatible: 3,504,872 parameters at α = 1."
        )
    },
)
