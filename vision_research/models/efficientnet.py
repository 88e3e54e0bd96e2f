"""EfficientNet-B0…B7 — M. Tan, Q. V. Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML 2019 (§3.3 compound scaling, §4 Table 1 baseline; SEEDS §2.9 and "Decisions").

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

B1–B7 are B0 scaled by ``scaling.py``, not a table of channels. Each builder takes the released
(width, depth, resolution, dropout) row of ``scaling.EFFICIENTNET_PARAMS``. Channels (stem, stages, head)
become ``make_divisible(c·width, 8)`` and repeats become ``ceil(n·depth)``, as in the released code.
``default_cfg`` holds the row's input size and dropout. Parameter counts equal torchvision's for all eight
(B0 **5,288,548** … B7 **66,347,960**; tests). Torchvision's weights load by position and give the same
outputs (tested for B0 and B1). ``scale_model("efficientnet_b0", φ)`` applies eq. 3 itself. The released
table is not eq. 3 for φ = 1…7: see ``scaling.py``.

Differences from the paper and the released TF code, all for torchvision weight compatibility:
- convolutions are padded symmetrically by k//2. TF pads stride-2 convs asymmetrically ("SAME"), so TF-ported
  checkpoints (timm's ``tf_efficientnet_*``) give slightly different outputs here;
- BatchNorm: B0–B4 use PyTorch's eps 1e-5 and momentum 0.1, as torchvision (its B0–B4 weights were trained
  in PyTorch). B5–B7 use the released eps 1e-3 and momentum 0.01 (TF's 0.99), as torchvision does for
  its ported B5–B7 weights.
"""

from __future__ import annotations

from torch import nn

from .mobilenet import InvertedResidualNet, StageSpec
from .registry import register_model
from .scaling import EFFICIENTNET_PARAMS, scale_depths, scale_widths

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
        img_size: int = 224,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        if width_mult <= 0 or depth_mult <= 0:
            raise ValueError(f"EfficientNet needs width_mult, depth_mult > 0; got {width_mult}, {depth_mult}")
        widths = scale_widths([s.out_chs for s in EFFICIENTNET_B0_STAGES], width_mult)
        depths = scale_depths([s.repeats for s in EFFICIENTNET_B0_STAGES], depth_mult)
        stages = [
            s._replace(out_chs=c, repeats=n) for s, c, n in zip(EFFICIENTNET_B0_STAGES, widths, depths, strict=True)
        ]
        stem_chs, head_chs = scale_widths([EFFICIENTNET_B0_STEM, EFFICIENTNET_B0_HEAD], width_mult)
        super().__init__(
            stages,
            num_classes,
            in_chans,
            stem_chs=stem_chs,
            head_chs=head_chs,
            act=nn.SiLU,
            se_ratio=SE_RATIO,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            img_size=img_size,
            linear_init="uniform",
            width_mult=width_mult,
            depth_mult=depth_mult,
        )
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eps, module.momentum = bn_eps, bn_momentum


def _efficientnet(
    variant: str,
    num_classes: int,
    in_chans: int,
    width_mult: float,
    depth_mult: float,
    drop_rate: float,
    drop_path_rate: float,
) -> EfficientNet:
    eps, momentum = EFFICIENTNET_BN[variant]
    resolution = EFFICIENTNET_PARAMS[variant].resolution
    return EfficientNet(
        num_classes, in_chans, width_mult, depth_mult, drop_rate, drop_path_rate, resolution, eps, momentum
    )


_B = EFFICIENTNET_PARAMS


@register_model
def efficientnet_b0(
    num_classes: int = 1000,
    in_chans: int = 3,
    width_mult: float = _B["efficientnet_b0"].width_mult,
    depth_mult: float = _B["efficientnet_b0"].depth_mult,
    drop_rate: float = _B["efficientnet_b0"].dropout,
    drop_path_rate: float = 0.2,
) -> EfficientNet:
    """EfficientNet-B0 (Table 1): 224², 5,288,548 parameters."""
    return _efficientnet("efficientnet_b0", num_classes, in_chans, width_mult, depth_mult, drop_rate, drop_path_rate)


@register_model
def efficientnet_b1(
    num_classes: int = 1000,
    in_chans: int = 3,
    width_mult: float = _B["efficientnet_b1"].width_mult,
    depth_mult: float = _B["efficientnet_b1"].depth_mult,
    drop_rate: float = _B["efficientnet_b1"].dropout,
    drop_path_rate: float = 0.2,
) -> EfficientNet:
    """EfficientNet-B1: B0 × (width 1.0, depth 1.1), 240², 7,794,184 parameters."""
    return _efficientnet("efficientnet_b1", num_classes, in_chans, width_mult, depth_mult, drop_rate, drop_path_rate)


@register_model
def efficientnet_b2(
    num_classes: int = 1000,
    in_chans: int = 3,
    width_mult: float = _B["efficientnet_b2"].width_mult,
    depth_mult: float = _B["efficientnet_b2"].depth_mult,
    drop_rate: float = _B["efficientnet_b2"].dropout,
    drop_path_rate: float = 0.2,
) -> EfficientNet:
    """EfficientNet-B2: B0 × (width 1.1, depth 1.2), 260², 9,109,994 parameters."""
    return _efficientnet("efficientnet_b2", num_classes, in_chans, width_mult, depth_mult, drop_rate, drop_path_rate)


@register_model
def efficientnet_b3(
    num_classes: int = 1000,
    in_chans: int = 3,
    width_mult: float = _B["efficientnet_b3"].width_mult,
    depth_mult: float = _B["efficientnet_b3"].depth_mult,
    drop_rate: float = _B["efficientnet_b3"].dropout,
    drop_path_rate: float = 0.2,
) -> EfficientNet:
    """EfficientNet-B3: B0 × (width 1.2, depth 1.4), 300², 12,233,232 parameters."""
    return _efficientnet("efficientnet_b3", num_classes, in_chans, width_mult, depth_mult, drop_rate, drop_path_rate)


@register_model
def efficientnet_b4(
    num_classes: int = 1000,
    in_chans: int = 3,
    width_mult: float = _B["efficientnet_b4"].width_mult,
    depth_mult: float = _B["efficientnet_b4"].depth_mult,
    drop_rate: float = _B["efficientnet_b4"].dropout,
    drop_path_rate: float = 0.2,
) -> EfficientNet:
    """EfficientNet-B4: B0 × (width 1.4, depth 1.8), 380², 19,341,616 parameters."""
    return _efficientnet("efficientnet_b4", num_classes, in_chans, width_mult, depth_mult, drop_rate, drop_path_rate)


@register_model
def efficientnet_b5(
    num_classes: int = 1000,
    in_chans: int = 3,
    width_mult: float = _B["efficientnet_b5"].width_mult,
    depth_mult: float = _B["efficientnet_b5"].depth_mult,
    drop_rate: float = _B["efficientnet_b5"].dropout,
    drop_path_rate: float = 0.2,
) -> EfficientNet:
    """EfficientNet-B5: B0 × (width 1.6, depth 2.2), 456², 30,389,784 parameters."""
    return _efficientnet("efficientnet_b5", num_classes, in_chans, width_mult, depth_mult, drop_rate, drop_path_rate)


@register_model
def efficientnet_b6(
    num_classes: int = 1000,
    in_chans: int = 3,
    width_mult: float = _B["efficientnet_b6"].width_mult,
    depth_mult: float = _B["efficientnet_b6"].depth_mult,
    drop_rate: float = _B["efficientnet_b6"].dropout,
    drop_path_rate: float = 0.2,
) -> EfficientNet:
    """EfficientNet-B6: B0 × (width 1.8, depth 2.6), 528², 43,040,704 parameters."""
    return _efficientnet("efficientnet_b6", num_classes, in_chans, width_mult, depth_mult, drop_rate, drop_path_rate)


@register_model
def efficientnet_b7(
    num_classes: int = 1000,
    in_chans: int = 3,
    width_mult: float = _B["efficientnet_b7"].width_mult,
    depth_mult: float = _B["efficientnet_b7"].depth_mult,
    drop_rate: float = _B["efficientnet_b7"].dropout,
    drop_path_rate: float = 0.2,
) -> EfficientNet:
    """EfficientNet-B7: B0 × (width 2.0, depth 3.1), 600², 66,347,960 parameters."""
    return _efficientnet("efficientnet_b7", num_classes, in_chans, width_mult, depth_mult, drop_rate, drop_path_rate)
