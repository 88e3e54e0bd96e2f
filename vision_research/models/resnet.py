"""ResNet and its direct descendants, one family, one network class, one class per unit type.

**ResNet** — K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
(arXiv 1512.03385), §3.3-3.4 and Table 1 (ImageNet), §4.2 (CIFAR-10):

    In 3×224×224 ─ conv1 64@7×7/2 ─ BN ─ ReLU ─ max-pool 3×3/2 ─ layer1..layer4 ─ GAP ─ fc 1000
    maps:          224 → 112 → 56 (layer1) → 28 → 14 → 7 (layer4)

    - ``resnet18`` / ``resnet34``: basic units (3×3, 3×3), [2,2,2,2] / [3,4,6,3];
      ``resnet50`` / ``resnet101`` / ``resnet152``: bottleneck units (1×1, 3×3, 1×1, ×4 maps out),
      [3,4,6,3] / [3,4,23,3] / [3,8,36,3]. BN after every conv, before the ReLU (§3.4).
    - Shortcuts (§3.3): identity, and where the shape changes a 1×1 projection + BN (option B, the paper's
      choice for Table 1's models). ``shortcut="A"`` zero-pads, ``"C"`` projects on every unit (Table 3);
      ``"none"`` removes shortcut and sum: the paper's plain networks of the same depth (§4.1, Fig. 3 middle).
    - **Where the stride goes.** The unsuffixed names are torchvision's weight-compatible layout, "ResNet v1.5"
      (fb.resnet.torch): a bottleneck unit that downsamples strides its 3×3. ``resnet50_paper``,
      ``resnet101_paper``, ``resnet152_paper`` stride the first 1×1 instead, as the paper's conv3_1/conv4_1/conv5_1
      and the authors' released Caffe models do. Same tensors, same parameter count, different features
      (v1.5 is ≈0.5 % top-1 better, at more FLOPs). Basic units stride their first 3×3 in both.
    - Parameters (``num_classes=1000``, asserted against torchvision in the tests): resnet18 11,689,512;
      resnet34 21,797,672; resnet50 25,557,032; resnet101 44,549,160; resnet152 60,192,808.

**CIFAR ResNets** (§4.2) ``resnet20/32/44/56/110`` (6n+2 layers, n = 3, 5, 7, 9, 18): conv 16@3×3 ─ three
stages of n basic units with 16/32/64 maps on 32×32/16×16/8×8 ─ GAP ─ fc 10; option A shortcuts (identity,
stride-2 subsampling, zero maps appended: no parameters). Parameters 269,722 / 464,154 / 658,586 / 853,018 /
1,727,962 (the paper's 0.27M / 0.46M / 0.66M / 0.85M / 1.7M, Table 6).

**Pre-activation** (``preact=True``) — K. He, X. Zhang, S. Ren, J. Sun, "Identity Mappings in Deep Residual
Networks", ECCV 2016, Fig. 1(b) / 4(e): units are BN → ReLU → conv, nothing follows the addition, and an extra
BN → ReLU (``norm``) ends the last stage. As in the authors' Torch code (fb.resnet.torch ``preresnet.lua``): the
stem keeps its BN-ReLU, which is the first unit's pre-activation ("right after conv1 and before splitting into
two paths", §4), so that unit has no ``bn1``; a unit that changes the shape feeds its pre-activated input to both
paths; a projection shortcut is a bare 1×1 conv (no BN).

**ResNeXt** — S. Xie, R. Girshick, P. Dollár, Z. Tu, K. He, "Aggregated Residual Transformations for Deep
Neural Networks", CVPR 2017, Table 1 and Fig. 3(c): the bottleneck's 3×3 is a grouped conv with ``cardinality``
groups of ``base_width`` maps per 64 planes (width = ⌊planes·d/64⌋·C). ``resnext50_32x4d``,
``resnext101_32x8d``, ``resnext101_64x4d`` as in torchvision (25,028,904 / 88,791,336 / 83,455,272).

**Squeeze-and-excitation** (``se_ratio``) — J. Hu, L. Shen, G. Sun, "Squeeze-and-Excitation Networks",
CVPR 2018, Fig. 3: GAP → FC C·r → ReLU → FC C → sigmoid rescales the residual branch before the addition, on
every unit. timm's ``SEModule`` (1×1 convs with bias); the reduced width is rounded to a multiple of 8
(timm's rule) where the paper takes C/16 exactly — the same for every bottleneck unit, 8 instead of 4 for
64-map basic units. ``seresnet50`` = ``resnet50(se_ratio=1/16)``, timm's layout: 28,088,024 parameters.

Additions, off by default (the papers' networks are the defaults): ``width_mult`` / ``depth_mult`` (compound
scaling hooks, Tan & Le 2019, rounded as ``scaling.py``: every width → make_divisible(w·width_mult, 8), every
stage's unit count → ⌈n·depth_mult⌉ with n·depth_mult first rounded to 6 decimals; the instance declares the
result as ``stage_depths`` / ``stage_widths``), ``drop_rate`` (dropout before fc) and ``drop_path_rate``
(stochastic depth, Huang et al. 2016, rising linearly from 0 on the first unit to ``drop_path_rate`` on the
last). Initialisation: He et al. 2015 ("Delving deep", the paper's [13]) normal, fan-out mode as torchvision;
BN γ = 1, β = 0.

Stages (``forward_features``): layer1..layer4 at reductions 4, 8, 16, 32 (the stem and its max-pool are not a
stage); CIFAR nets layer1..layer3 at 1, 2, 4. Modules carry torchvision's names (conv1, bn1, layer1.0.conv1,
downsample.0, fc) and timm's for SE (``se.fc1``), so both load by name; their order is the references' too.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..constants import dataset_stats
from .base import Backbone, default_cfg, feature_info
from .layers import DropPath, SEModule, make_divisible
from .registry import Variant, register_variants
from .scaling import check_multipliers, scale_depths, scale_widths

SHORTCUTS = ("A", "B", "C", "none")  # none: the plain network of §4.1 (no shortcut, no sum)
_TIMM_PREACT_UNIT = re.compile(r"stages\.(\d+)\.blocks\.(\d+)\.(norm|conv|downsample\.conv)(\d?)\.(.+)")

# One conv of a residual branch: in_chs, out_chs, kernel_size, stride, groups.
ConvSpec = tuple[int, int, int, int, int]


class ZeroPadShortcut(nn.Module):
    """Option A shortcut (§3.3): the identity subsampled by ``stride``, with zero maps appended for the new
    channels. No parameters."""

    def __init__(self, in_chs: int, out_chs: int, stride: int) -> None:
        super().__init__()
        if out_chs < in_chs:
            raise ValueError(f"a zero-padding shortcut cannot reduce channels ({in_chs} → {out_chs})")
        self.in_chs, self.out_chs, self.stride = in_chs, out_chs, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.out_chs - self.in_chs))

    def extra_repr(self) -> str:
        return f"{self.in_chs}, {self.out_chs}, stride={self.stride}"


def make_shortcut(in_chs: int, out_chs: int, stride: int, kind: str, norm: bool) -> nn.Module | None:
    """The shortcut of a unit: ``None`` (identity, or no shortcut at all for ``"none"``), option A (zero-pad) or
    a 1×1 projection (B, C) + BN if ``norm``.

    A and B project only where the shape changes; C projects on every unit.
    """
    if kind not in SHORTCUTS:
        raise ValueError(f"shortcut={kind!r}: choose one of {', '.join(SHORTCUTS)}")
    if kind == "none" or (kind != "C" and stride == 1 and in_chs == out_chs):
        return None
    if kind == "A":
        return ZeroPadShortcut(in_chs, out_chs, stride)
    layers: list[nn.Module] = [nn.Conv2d(in_chs, out_chs, 1, stride, bias=False)]
    if norm:
        layers.append(nn.BatchNorm2d(out_chs))
    return nn.Sequential(*layers)


class ResidualUnit(nn.Module):
    """A residual unit: a chain of convs (the residual branch), optional SE and drop-path, the shortcut, the sum.

    Subclasses only declare the chain and pass the unit's options on (``**unit_options``). Post-activation (2015):
    conv_i → bn_i → ReLU, no ReLU after the last bn, ReLU after the sum. Pre-activation (2016): bn_i → ReLU → conv_i,
    nothing after the sum; ``first`` marks the network's first unit, whose input the stem has already activated
    (no ``bn1``).
    """

    expansion: int = 1

    def __init__(
        self,
        convs: Sequence[ConvSpec],
        *,
        shortcut: str = "B",
        preact: bool = False,
        first: bool = False,
        se_ratio: float | None = None,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.preact, self.num_convs = preact, len(convs)
        for i, (in_chs, out_chs, kernel_size, stride, groups) in enumerate(convs, 1):
            if preact:
                self.add_module(f"bn{i}", None if first and i == 1 else nn.BatchNorm2d(in_chs))
            conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, groups=groups, bias=False)
            self.add_module(f"conv{i}", conv)
            if not preact:
                self.add_module(f"bn{i}", nn.BatchNorm2d(out_chs))
        self.relu = nn.ReLU(inplace=True)
        unit_in, unit_out, unit_stride = convs[0][0], convs[-1][1], math.prod(spec[3] for spec in convs)
        self.se = SEModule(unit_out, rd_ratio=se_ratio) if se_ratio else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.downsample = make_shortcut(unit_in, unit_out, unit_stride, shortcut, norm=not preact)
        self.residual = shortcut != "none"
        self._layers = [(f"conv{i}", f"bn{i}") for i in range(1, len(convs) + 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if self.preact:
            if self.bn1 is not None:
                x = self.relu(self.bn1(x))
            if self.downsample is not None:  # the shape changes: both paths see the activated input
                shortcut = self.downsample(x)
            for i, (conv, bn) in enumerate(self._layers):
                if i > 0:
                    x = self.relu(getattr(self, bn)(x))
                x = getattr(self, conv)(x)
        else:
            if self.downsample is not None:
                shortcut = self.downsample(x)
            for i, (conv, bn) in enumerate(self._layers):
                x = getattr(self, bn)(getattr(self, conv)(x))
                if i < self.num_convs - 1:
                    x = self.relu(x)
        if self.se is not None:
            x = self.se(x)
        if self.residual:
            x = self.drop_path(x) + shortcut
        return x if self.preact else self.relu(x)


class BasicBlock(ResidualUnit):
    """Two 3×3 convs with ``planes`` maps (ResNet-18/34, the CIFAR nets); the first one carries the stride."""

    expansion = 1

    def __init__(self, in_chs: int, planes: int, stride: int = 1, **unit_options: Any) -> None:
        super().__init__([(in_chs, planes, 3, stride, 1), (planes, planes, 3, 1, 1)], **unit_options)


class Bottleneck(ResidualUnit):
    """1×1 reduce → 3×3 (grouped for ResNeXt) → 1×1 expand to 4·``planes`` maps (ResNet-50/101/152, ResNeXt).

    The inner width is ⌊planes·base_width/64⌋·cardinality (``planes`` for ResNet). The stride sits on the 3×3
    (torchvision, v1.5) or, with ``stride_on_1x1``, on the first 1×1 (the paper).
    """

    expansion = 4

    def __init__(
        self,
        in_chs: int,
        planes: int,
        stride: int = 1,
        *,
        cardinality: int = 1,
        base_width: int = 64,
        stride_on_1x1: bool = False,
        **unit_options: Any,
    ) -> None:
        width = int(planes * base_width / 64) * cardinality
        stride_1x1, stride_3x3 = (stride, 1) if stride_on_1x1 else (1, stride)
        convs = [
            (in_chs, width, 1, stride_1x1, 1),
            (width, width, 3, stride_3x3, cardinality),
            (width, planes * self.expansion, 1, 1, 1),
        ]
        super().__init__(convs, **unit_options)


class ResNet(Backbone):
    """Stem → stages of residual units → (pre-activation: BN-ReLU) → GAP → dropout → fc; see the module docstring.

    ``block`` is ``BasicBlock`` or ``Bottleneck`` (``block_args``: cardinality, base_width, stride_on_1x1);
    ``depths`` / ``widths`` the units and planes per stage before scaling; ``cifar`` selects the §4.2 stem
    (3×3 stride 1, no max-pool) and the CIFAR-10 ``default_cfg``.

    For scaling (``scaling.py``), the instance declares ``stage_depths`` (units per stage), ``stage_widths``
    (planes per stage; a stage outputs planes·``block.expansion`` maps), ``stem_width``, and the multipliers
    ``width_mult`` / ``depth_mult`` that produced them from the unscaled ``base_depths`` / ``base_widths``.
    """

    def __init__(
        self,
        block: type[ResidualUnit],
        depths: Sequence[int],
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        widths: Sequence[int] = (64, 128, 256, 512),
        stem_width: int = 64,
        cifar: bool = False,
        shortcut: str = "B",
        preact: bool = False,
        se_ratio: float | None = None,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        block_args: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_multipliers("ResNet", width_mult, depth_mult)
        if se_ratio is not None and not 0 < se_ratio <= 1:
            raise ValueError(f"ResNet se_ratio must be in (0, 1] (1/16 = 0.0625) or None; got {se_ratio}")
        if not (0 <= drop_rate < 1 and 0 <= drop_path_rate < 1):
            raise ValueError(f"ResNet drop_rate / drop_path_rate must be in [0, 1); got {drop_rate}, {drop_path_rate}")
        self.num_classes, self.preact = num_classes, preact
        self.base_depths, self.base_widths = tuple(depths), tuple(widths)
        self.width_mult, self.depth_mult = width_mult, depth_mult
        self.stage_depths = tuple(scale_depths(depths, depth_mult))
        self.stage_widths = tuple(scale_widths(widths, width_mult))
        self.stem_width = make_divisible(stem_width * width_mult, 8)

        kernel, stride = (3, 1) if cifar else (7, 2)
        self.conv1 = nn.Conv2d(in_chans, self.stem_width, kernel, stride, kernel // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(self.stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if cifar else nn.MaxPool2d(3, 2, 1)

        total_units = sum(self.stage_depths)
        drop_path_rates = iter(drop_path_rate * i / max(total_units - 1, 1) for i in range(total_units))
        in_chs, reduction = self.stem_width, 1 if cifar else 4
        self.stage_names: list[str] = []
        self.feature_info = []
        for index, (depth, planes) in enumerate(zip(self.stage_depths, self.stage_widths, strict=True)):
            stage_stride = 1 if index == 0 else 2
            units = []
            for unit in range(depth):
                units.append(
                    block(
                        in_chs,
                        planes,
                        stage_stride if unit == 0 else 1,
                        shortcut=shortcut,
                        preact=preact,
                        first=preact and index == 0 and unit == 0,
                        se_ratio=se_ratio,
                        drop_path=next(drop_path_rates),
                        **(block_args or {}),
                    )
                )
                in_chs = planes * block.expansion
            name = f"layer{index + 1}"
            self.add_module(name, nn.Sequential(*units))
            reduction *= stage_stride
            self.stage_names.append(name)
            self.feature_info.append(feature_info(in_chs, reduction, name))
        self.norm = nn.Sequential(OrderedDict(bn=nn.BatchNorm2d(in_chs), act=nn.ReLU(inplace=True))) if preact else None
        if preact:
            self.feature_info[-1]["module"] = "norm"
        self.num_features = in_chs
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_chs, num_classes)

        size = 32 if cifar else 224
        self.default_cfg = default_cfg(
            (in_chans, size, size),
            *dataset_stats("cifar10" if cifar else "imagenet", in_chans),
            num_classes,
            "conv1",
            "fc",
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = []
        for name in self.stage_names:
            x = getattr(self, name)(x)
            features.append(x)
        if self.norm is not None:
            features[-1] = self.norm(features[-1])
        return features

    def forward_head(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.fc(self.head_drop(self.avgpool(features[-1]).flatten(1)))

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes).to(self.fc.weight.device)
        self.default_cfg["num_classes"] = num_classes

    def remap_state_dict(self, state_dict: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor] | None:
        """Rename a reference state dict to our keys (``load_pretrained`` calls this for torchvision/timm sources).

        torchvision's and timm's ResNets already carry our names (else: by position). timm's pre-activation
        ``resnetv2_*`` (BatchNorm variants) are renamed: ``stem.conv`` → conv1, ``stages.i.blocks.j.normK/convK``
        → ``layer{i+1}.j.bnK/convK``, ``downsample.conv`` → ``downsample.0``, ``norm`` → ``norm.bn``, the 1×1-conv
        ``head.fc`` → ``fc``. timm normalises after the stem's max-pool (the first unit's norm1), we before it:
        the same function, as max-pooling commutes with a per-channel increasing BN-ReLU (γ > 0). Exact for
        bottleneck nets; timm's basic-unit nets (``resnetv2_18/34``) add the *raw* stem output in their first unit,
        where the paper and we add the activated one, so their outputs differ there.
        """
        if "stem.conv.weight" not in state_dict:
            return None  # torchvision / timm ResNets: by name (else by position)
        renamed = {}
        for key, tensor in state_dict.items():
            unit = _TIMM_PREACT_UNIT.fullmatch(key)
            if key == "stem.conv.weight":
                key = "conv1.weight"
            elif key.startswith(("norm.", "head.fc.")):
                key = "norm.bn." + key[5:] if key.startswith("norm.") else "fc." + key[8:]
                tensor = tensor.flatten(1) if key == "fc.weight" else tensor
            elif unit:
                stage, index, kind, number, rest = unit.groups()
                prefix = f"layer{int(stage) + 1}.{index}."
                if kind == "downsample.conv":
                    key = f"{prefix}downsample.0.{rest}"
                elif kind == "norm" and number == "1" and stage == index == "0":
                    key = f"bn1.{rest}"  # the first unit's pre-activation is our stem's BN
                else:
                    key = f"{prefix}{'bn' if kind == 'norm' else 'conv'}{number}.{rest}"
            renamed[key] = tensor
        return renamed


# The variants (name → architecture, option defaults, description) -----------------------------------------------
IMAGENET_ARCH: dict[str, Any] = {"widths": (64, 128, 256, 512), "stem_width": 64, "cifar": False}
CIFAR_ARCH: dict[str, Any] = {"widths": (16, 32, 64), "stem_width": 16, "cifar": True}
CIFAR_DEFAULTS = {"num_classes": 10, "shortcut": "A"}


def _basic(depths: Sequence[int], arch: dict[str, Any] = IMAGENET_ARCH) -> dict[str, Any]:
    return {"block": BasicBlock, "depths": depths, "block_args": None, **arch}


def _bottleneck(
    depths: Sequence[int], cardinality: int = 1, base_width: int = 64, stride_on_1x1: bool = False
) -> dict[str, Any]:
    unit = {"cardinality": cardinality, "base_width": base_width, "stride_on_1x1": stride_on_1x1}
    return {"block": Bottleneck, "depths": depths, "block_args": unit, **IMAGENET_ARCH}


def _cifar(n: int, parameters: str) -> Variant:
    """The §4.2 network of 6n+2 layers: n basic units per stage, 10 classes, option A shortcuts."""
    return Variant(
        _basic((n, n, n), CIFAR_ARCH), f"CIFAR ResNet-{6 * n + 2} (n = {n}): {parameters} parameters.", CIFAR_DEFAULTS
    )


register_variants(
    ResNet,
    {
        # ImageNet ResNets (Table 1), torchvision layout (v1.5: a downsampling bottleneck strides its 3×3)
        "resnet18": Variant(_basic((2, 2, 2, 2)), "ResNet-18: basic units [2, 2, 2, 2] (11,689,512 parameters)."),
        "resnet34": Variant(_basic((3, 4, 6, 3)), "ResNet-34: basic units [3, 4, 6, 3] (21,797,672 parameters)."),
        "resnet50": Variant(_bottleneck((3, 4, 6, 3)), "ResNet-50 v1.5: bottleneck [3, 4, 6, 3] (25,557,032)."),
        "resnet101": Variant(_bottleneck((3, 4, 23, 3)), "ResNet-101 v1.5: bottleneck [3, 4, 23, 3] (44,549,160)."),
        "resnet152": Variant(_bottleneck((3, 8, 36, 3)), "ResNet-152 v1.5: bottleneck [3, 8, 36, 3] (60,192,808)."),
        # The paper's bottleneck layout: stride 2 on the first 1×1 of conv3_1, conv4_1, conv5_1
        "resnet50_paper": Variant(
            _bottleneck((3, 4, 6, 3), stride_on_1x1=True), "ResNet-50 as in He et al. 2015 (25,557,032 parameters)."
        ),
        "resnet101_paper": Variant(
            _bottleneck((3, 4, 23, 3), stride_on_1x1=True), "ResNet-101 as in He et al. 2015 (44,549,160)."
        ),
        "resnet152_paper": Variant(
            _bottleneck((3, 8, 36, 3), stride_on_1x1=True), "ResNet-152 as in He et al. 2015 (60,192,808)."
        ),
        # ResNeXt (Xie et al. 2017), torchvision layout
        "resnext50_32x4d": Variant(
            _bottleneck((3, 4, 6, 3), cardinality=32, base_width=4), "ResNeXt-50 (32×4d) (25,028,904 parameters)."
        ),
        "resnext101_32x8d": Variant(
            _bottleneck((3, 4, 23, 3), cardinality=32, base_width=8), "ResNeXt-101 (32×8d), torchvision's (88,791,336)."
        ),
        "resnext101_64x4d": Variant(
            _bottleneck((3, 4, 23, 3), cardinality=64, base_width=4), "ResNeXt-101 (64×4d), Table 5 (83,455,272)."
        ),
        # SE-ResNet (Hu et al. 2018), timm layout
        "seresnet50": Variant(
            _bottleneck((3, 4, 6, 3)), "SE-ResNet-50: SE (r = 16) on every unit (28,088,024).", {"se_ratio": 0.0625}
        ),
        # CIFAR-10 ResNets (§4.2): 6n+2 layers, option A shortcuts
        "resnet20": _cifar(3, "269,722"),
        "resnet32": _cifar(5, "464,154"),
        "resnet44": _cifar(7, "658,586"),
        "resnet56": _cifar(9, "853,018"),
        "resnet110": _cifar(18, "1,727,962"),
    },
)
