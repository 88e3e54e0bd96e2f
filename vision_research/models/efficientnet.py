"""EfficientNet-B0…B7 — M. Tan, Q. V. Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML 2019 (§3.3 compound scaling, §4 Table 1 baseline; Géron ch. 14, 3rd ed.; the paper's
α·β²·γ² ≈ 2 and γ = 1.15 are used, not the sum constraint and γ = 1.1 of study notes on the book).

B0 (Table 1), found by architecture search on a FLOPs budget:

    stage  operator           input res.  channels  layers
    1      conv 3×3 /2        224²        32        1
    2      MBConv1, k3×3      112²        16        1
    3      MBConv6, k3×3      112²        24        2     (first block /2)
    4      MBConv6, k5×5      56²         40        2     /2
    5      MBConv6, k3×3      28²         80        3     /2
    6      MBConv6, k5×5      14²         112       3
    7      MBConv6, k5×5      14²         192       4     /2
    8      MBConv6, k3×3      7²          320       1
    9      conv 1×1, pool, fc 7²          1280      1

    MBConv6 = MobileNetV2's inverted residual (``mobilenet.InvertedResidual``) with expansion 6, SiLU
    (swish) activations and squeeze-and-excitation between the depthwise and the projection convs. SE
    squeezes to 0.25 × the block's *input* channels (released code, torchvision). Stochastic depth: block
    i of n (from 0) drops its residual branch with p = 0.2·i/n, so survival falls linearly from 1 towards
    0.8. Dropout before the fc (``EFFICIENTNET_PARAMS``).

B1–B7 are B0 scaled by ``scaling.py``, not a table of channels. Each variant is one released (width, depth,
resolution, dropout) row of ``scaling.EFFICIENTNET_PARAMS``: the width, depth and dropout are its options'
defaults, the resolution (and BatchNorm, below) fixed. Channels (stem, stages, head) become
``make_divisible(c·width, 8)`` and repeats become ``ceil(n·depth)``, as in the released code. ``default_cfg``
holds the row's input size and dropout. Parameter counts equal torchvision's for all eight (B0 **5,288,548** …
B7 **66,347,960**; tests). Torchvision's weights load by position and give the same outputs (tested for B0 and
B1). ``scale_model("efficientnet_b0", φ)`` applies eq. 3 itself. The released table is not eq. 3 for
φ = 1…7: see ``scaling.py``.

Differences from the paper and the released TF code, all for torchvision weight compatibility:
- convolutions are padded symmetrically by k//2. TF pads stride-2 convs asymmetrically ("SAME"), so TF-ported
  checkpoints (timm's ``tf_efficientnet_*``) give slightly different outputs here;
- BatchNorm: B0–B4 use PyTorch's eps 1e-5 and momentum 0.1, as torchvision (its B0–B4 weights were trained
  in PyTorch). B5–B7 use the released eps 1e-3 and momentum 0.01 (TF's 0.99), as torchvision does for
  its ported B5–B7 weights.
"""

from __future__ import annotations

from torch import nn

from .mobilenet import InvertedResidualNet, StageSpec, scale_stages
from .registry import Variant, register_variants
from .scaling import EFFICIENTNET_PARAMS, EfficientNetParams, check_multipliers, scale_widths

# Table 1, stages 2-8: expansion t, kernel, stride of the first block, channels, layers.
EFFICIENTNET_B0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(1, 3, 1, 16, 1),
    StageSpec(6, 3, 2, 24, 2),
    StageSpec(6, 5, 2, 40, 2),
    StageSpec(6, 3, 2, 80, 3),
    StageSpec(6, 5, 1, 112, 3),
    StageSpec(6, 5, 2, 192, 4),
    StageSpec(6, 3, 1, 320, 1),
)
EFFICIENTNET_B0_STEM, EFFICIENTNET_B0_HEAD = 32, 1280
SE_RATIO = 0.25
# BatchNorm (eps, momentum) per variant: PyTorch's defaults, the released TF values for B5-B7 (torchvision).
TORCH_BN, TF_BN = (1e-5, 0.1), (1e-3, 0.01)
EFFICIENTNET_BN: dict[str, tuple[float, float]] = {
    name: TF_BN if name in ("efficientnet_b5", "efficientnet_b6", "efficientnet_b7") else TORCH_BN
    for name in EFFICIENTNET_PARAMS
}


class EfficientNet(InvertedResidualNet):
    """B0 of Table 1 scaled by ``width_mult`` / ``depth_mult`` with the released rounding rules."""

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        drop_rate: float = 0.2,
        drop_path_rate: float = 0.2,
        image_size: int = 224,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        check_multipliers("EfficientNet", width_mult, depth_mult)
        stem_chs, head_chs = scale_widths([EFFICIENTNET_B0_STEM, EFFICIENTNET_B0_HEAD], width_mult)
        super().__init__(
            scale_stages(EFFICIENTNET_B0_STAGES, width_mult, depth_mult),
            num_classes,
            in_chans,
            stem_chs=stem_chs,
            head_chs=head_chs,
            act=nn.SiLU,
            se_ratio=SE_RATIO,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            image_size=image_size,
            linear_init="uniform",
            width_mult=width_mult,
            depth_mult=depth_mult,
        )
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eps, module.momentum = bn_eps, bn_momentum


# The variants: B0 × each released row (name → architecture, option defaults, description) -----------------------------
# Parameter counts of B0…B7 (= torchvision's, tested).
EFFICIENTNET_COUNTS = (5_288_548, 7_794_184, 9_109_994, 12_233_232, 19_341_616, 30_389_784, 43_040_704, 66_347_960)


def _variant(name: str, row: EfficientNetParams, parameters: int) -> Variant:
    """The row's resolution and BatchNorm are architecture; its multipliers and dropout the option defaults."""
    eps, momentum = EFFICIENTNET_BN[name]
    b = name.removeprefix("efficientnet_b")
    scaled = " (Table 1):" if b == "0" else f": B0 × (width {row.width_mult}, depth {row.depth_mult}),"
    return Variant(
        {"image_size": row.resolution, "bn_eps": eps, "bn_momentum": momentum},
        f"EfficientNet-B{b}{scaled} {row.resolution}², {parameters:,} parameters.",
        {"width_mult": row.width_mult, "depth_mult": row.depth_mult, "drop_rate": row.dropout},
    )


register_variants(
    EfficientNet,
    {
        name: _variant(name, row, parameters)
        for (name, row), parameters in zip(EFFICIENTNET_PARAMS.items(), EFFICIENTNET_COUNTS, strict=True)
    },
)
