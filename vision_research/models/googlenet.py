"""GoogLeNet / Inception v1 — C. Szegedy, W. Liu, Y. Jia, P. Sermanet, S. Reed, D. Anguelov, D. Erhan,
V. Vanhoucke, A. Rabinovich, "Going Deeper with Convolutions", CVPR 2015 (§4-5, Table 1, Fig. 2b and 3).
The per-module filter counts and the auxiliary-head sizes are taken from the paper (the books
give them only in a figure: Géron ch. 14, Fig. 14-14). SE-Inception: J. Hu, L. Shen, G. Sun, "Squeeze-and-Excitation
Networks", CVPR 2018 (§4, Fig. 2).

    In 3×224×224 ─ conv 7×7/2 64 ─ max-pool 3×3/2 ─ [LRN] ─ conv 1×1 64 ─ conv 3×3 192 ─ [LRN]   (56², /4)
               ─ max-pool 3×3/2 ─ inception 3a, 3b                                             (28², /8)
               ─ max-pool 3×3/2 ─ inception 4a (→ aux 1), 4b, 4c, 4d (→ aux 2), 4e              (14², /16)
               ─ max-pool /2 ─ inception 5a, 5b                                                 (7², /32)
               ─ global average pool ─ dropout ─ fc 1000

    Five stride-2 steps take 224 to 7×7 (Géron ch. 14). An inception module (Fig. 2b) concatenates four
    branches: 1×1; 1×1 → 3×3; 1×1 → 5×5; 3×3 max-pool (stride 1) → 1×1 — every conv with ReLU.
    Auxiliary classifier (§5), on 4a (512 maps) and 4d (528 maps): average pool 5×5/3 (14² → 4²) ─ conv 1×1
    128 + ReLU ─ fc 1024 + ReLU ─ dropout 0.7 ─ fc classes. Training only: in training mode ``forward``
    returns ``(logits, aux1_logits, aux2_logits)`` (the task weights them L + 0.3·L_aux1 + 0.3·L_aux2, Géron
    ch. 14; Michelucci ch. 4); in eval mode, or with ``aux_logits=False``, the logits alone. ``forward_features``
    never holds them.

Two registered models share one class; every difference is an option:

``googlenet_paper`` — the paper's network: no batch norm (conv biases), LRN twice in the stem (after the
first max-pool and after the 3×3 conv, Fig. 3), real 5×5 convs in the 5×5 branch, 3×3/2 max-pools, dropout
0.4 before the classifier. The paper gives no LRN constants; AlexNet's are used (n = 5, α = 1e-4, β = 0.75,
k = 2, the paper's α convention; not Géron's, whose editions disagree). The paper does not give an
initialisation either; the one of the BVLC Caffe reimplementation is used: Xavier (uniform, fan-in) weights, conv
biases 0.2, fc biases 0.
Parameters: **6,998,552** without the auxiliary heads, 13,378,280 with them (Table 1 sums to about 6.8M).

``googlenet`` — torchvision's weight-compatible layout (same module names, so torchvision's state dicts load
by name): batch norm (eps 1e-3, no conv bias) after every conv instead of LRN, and torchvision's two quirks
kept for the sake of its weights: the "5×5" branch uses a **3×3** conv, and the max-pool before 5a is 2×2/2
(same 7×7 output at 224). Dropout 0.2; truncated-normal (σ = 0.01, cut at ±2σ) initialisation.
**6,624,904** parameters without the auxiliary heads (= torchvision), 13,004,888 with them.
torchvision builds its model without weights with ``transform_input=False`` (the default here too); its
ImageNet checkpoint expects ``transform_input=True`` (the images re-normalised to [-1, 1] as in the original
training) and its auxiliary heads are untrained.

Differences from the paper in both: max-pools use ceil mode (Caffe's rounding: 112 → 56, as Table 1 has);
the final average pool is global (7×7 at 224, any size otherwise); the auxiliary heads' 5×5/3 pool is
followed by an adaptive pool to 4×4 — the identity at 224, and what keeps the 2048-input fc valid for other
sizes (maps smaller than 5 skip the 5×5 pool). torchvision pools its aux input adaptively to 4×4 only, so its
auxiliary logits differ slightly; the main logits are identical.

``se_ratio`` (both models) adds an SE block (``layers.SEModule``: C → C·se_ratio → C) on each inception
module's concatenated output, as SE-Inception does; ``se_ratio=1/16`` is the paper's reduction r = 16.

Stages (``forward_features``): the maps before each stride-2 max-pool — stem (192 maps, /4), inception 3b
(480, /8), 4e (832, /16), 5b (1024, /32).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..constants import IMAGENET_MEAN, IMAGENET_STD, dataset_stats
from .base import Backbone, default_cfg, feature_info
from .layers import ConvNormAct, LocalResponseNorm, SEModule
from .registry import Variant, register_variants

# Table 1: #1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj, for each inception module.
INCEPTION_V1_TABLE: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
BN_EPS = 1e-3  # Inception's batch-norm epsilon (torchvision's BasicConv2d)
CAFFE_CONV_BIAS = 0.2  # BVLC GoogLeNet's constant bias filler


def _conv(in_chs: int, out_chs: int, kernel_size: int, batch_norm: bool, stride: int = 1) -> ConvNormAct:
    """conv → [BN (eps 1e-3)] → ReLU, SAME padding; a conv bias only without BN."""
    return ConvNormAct(in_chs, out_chs, kernel_size, stride, norm=batch_norm, eps=BN_EPS)


class InceptionModule(nn.Module):
    """Fig. 2b: 1×1 | 1×1 → 3×3 | 1×1 → k×k | max-pool 3×3/1 → 1×1, concatenated; an optional SE block.

    ``branch5_kernel`` is the paper's 5 or torchvision's 3. Children ``branch1``..``branch4`` (and ``se``).
    """

    def __init__(
        self,
        in_chs: int,
        widths: tuple[int, int, int, int, int, int],
        batch_norm: bool = True,
        branch5_kernel: int = 5,
        se_ratio: float | None = None,
    ) -> None:
        super().__init__()
        ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj = widths
        self.branch1 = _conv(in_chs, ch1x1, 1, batch_norm)
        self.branch2 = nn.Sequential(_conv(in_chs, ch3x3red, 1, batch_norm), _conv(ch3x3red, ch3x3, 3, batch_norm))
        self.branch3 = nn.Sequential(
            _conv(in_chs, ch5x5red, 1, batch_norm), _conv(ch5x5red, ch5x5, branch5_kernel, batch_norm)
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), _conv(in_chs, pool_proj, 1, batch_norm)
        )
        self.out_chs = ch1x1 + ch3x3 + ch5x5 + pool_proj
        # rd_divisor=1: C·se_ratio rounded, the paper's C/r (timm would round to a multiple of 8).
        self.se = SEModule(self.out_chs, rd_ratio=se_ratio, rd_divisor=1) if se_ratio else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)
        return self.se(out) if self.se is not None else out


class InceptionAux(nn.Module):
    """§5's auxiliary classifier: avg-pool 5×5/3 → conv 1×1 128 → fc 1024 → ReLU → dropout 0.7 → fc classes.

    The 5×5/3 pool turns 4a's and 4d's 14×14 maps (224 input) into 4×4; an adaptive pool to 4×4 follows,
    the identity at 224, so that other input sizes keep the fc's 2048 inputs.
    """

    def __init__(self, in_chs: int, num_classes: int, batch_norm: bool = True, drop_rate: float = 0.7) -> None:
        super().__init__()
        self.conv = _conv(in_chs, 128, 1, batch_norm)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.dropout = nn.Dropout(drop_rate)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) >= 5:
            x = F.avg_pool2d(x, 5, stride=3)
        x = self.conv(F.adaptive_avg_pool2d(x, 4))
        return self.fc2(self.dropout(F.relu(self.fc1(torch.flatten(x, 1)), inplace=True)))


class GoogLeNet(Backbone):
    """GoogLeNet with each of the paper's and torchvision's choices as an option (see the module docstring).

    ``batch_norm``: BN after every conv (else conv biases); ``lrn``: the stem's two LRN layers;
    ``branch5_kernel``: 5 (paper) or 3 (torchvision); ``pool4_kernel``: the max-pool before 5a, 3 (paper) or
    2 (torchvision); ``drop_rate``: dropout before the classifier; ``aux_logits``: the two auxiliary heads;
    ``se_ratio``: an SE block on each inception module; ``transform_input``: re-normalise an ImageNet-
    normalised input to [-1, 1], as torchvision's ported checkpoint expects.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        aux_logits: bool = True,
        batch_norm: bool = True,
        lrn: bool = False,
        branch5_kernel: int = 3,
        pool4_kernel: int = 2,
        drop_rate: float = 0.2,
        se_ratio: float | None = None,
        transform_input: bool = False,
    ) -> None:
        super().__init__()
        for option, value, choices in (
            ("branch5_kernel", branch5_kernel, (3, 5)),
            ("pool4_kernel", pool4_kernel, (2, 3)),
        ):
            if value not in choices:
                raise ValueError(f"GoogLeNet {option}={value!r}: choose one of {', '.join(map(str, choices))}")
        if se_ratio is not None and not 0 < se_ratio <= 1:
            raise ValueError(f"GoogLeNet se_ratio={se_ratio!r}: a fraction in (0, 1], e.g. 0.0625 (r = 16), or null")
        if transform_input and in_chans != 3:
            raise ValueError(f"GoogLeNet transform_input=True re-normalises RGB inputs; got in_chans={in_chans}")
        self.num_classes, self.aux_logits, self.transform_input = num_classes, aux_logits, transform_input
        self.batch_norm = batch_norm
        mean, std = dataset_stats("imagenet", in_chans)

        self.conv1 = _conv(in_chans, 64, 7, batch_norm, stride=2)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.lrn1 = LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0) if lrn else nn.Identity()
        self.conv2 = _conv(64, 64, 1, batch_norm)
        self.conv3 = _conv(64, 192, 3, batch_norm)
        self.lrn2 = LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0) if lrn else nn.Identity()
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        in_chs = 192
        for name, widths in INCEPTION_V1_TABLE.items():
            module = InceptionModule(in_chs, widths, batch_norm, branch5_kernel, se_ratio)
            self.add_module(f"inception{name}", module)
            in_chs = module.out_chs
            if name == "3b":
                self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            elif name == "4e":
                self.maxpool4 = nn.MaxPool2d(pool4_kernel, stride=2, ceil_mode=True)
        self.aux1 = InceptionAux(512, num_classes, batch_norm) if aux_logits else None
        self.aux2 = InceptionAux(528, num_classes, batch_norm) if aux_logits else None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(1024, num_classes)

        self.feature_info = [
            feature_info(192, 4, "lrn2" if lrn else "conv3"),
            feature_info(480, 8, "inception3b"),
            feature_info(832, 16, "inception4e"),
            feature_info(1024, 32, "inception5b"),
        ]
        self.default_cfg = default_cfg(
            (in_chans, 224, 224),
            mean,
            std,
            num_classes,
            "conv1.conv",
            "fc",
            aux_classifiers=("aux1.fc2", "aux2.fc2") if aux_logits else (),
        )
        for name, module in self.named_modules():
            if ".se." not in f".{name}.":  # SE blocks keep their default initialisation
                self._init_layer(module)

    def _init_layer(self, module: nn.Module) -> None:
        """Truncated normal σ = 0.01 with BN (torchvision); Caffe's Xavier and 0.2 conv biases without."""
        if not isinstance(module, nn.Conv2d | nn.Linear):
            return
        if self.batch_norm:
            nn.init.trunc_normal_(module.weight, std=0.01, a=-0.02, b=0.02)
        else:
            bound = math.sqrt(3.0 / module.weight[0].numel())  # Caffe "xavier": U(±√(3 / fan_in))
            nn.init.uniform_(module.weight, -bound, bound)
        if module.bias is not None:
            nn.init.constant_(module.bias, CAFFE_CONV_BIAS if isinstance(module, nn.Conv2d) else 0.0)

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        if not self.transform_input:
            return x
        mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return x * (std / 0.5) + (mean - 0.5) / 0.5

    def _forward_body(self, x: torch.Tensor, aux_inputs: bool = False) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The four stage maps and (if asked) the inputs of the auxiliary heads, 4a's and 4d's outputs."""
        taps = []
        x = self.lrn1(self.maxpool1(self.conv1(self._transform(x))))
        stem = self.lrn2(self.conv3(self.conv2(x)))
        s8 = self.inception3b(self.inception3a(self.maxpool2(stem)))
        x = self.inception4a(self.maxpool3(s8))
        if aux_inputs:
            taps.append(x)
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        if aux_inputs:
            taps.append(x)
        s16 = self.inception4e(x)
        s32 = self.inception5b(self.inception5a(self.maxpool4(s16)))
        return [stem, s8, s16, s32], taps

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self._forward_body(x)[0]

    def forward_head(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.avgpool(features[-1]), 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits; in training mode with ``aux_logits``, ``(logits, aux1_logits, aux2_logits)``."""
        if not (self.training and self.aux_logits):
            return self.forward_head(self.forward_features(x))
        features, (tap1, tap2) = self._forward_body(x, aux_inputs=True)
        return self.forward_head(features), self.aux1(tap1), self.aux2(tap2)

    def reset_classifier(self, num_classes: int) -> None:
        """A new final fc and, with ``aux_logits``, new final fcs of both auxiliary heads."""
        self.num_classes = num_classes
        self.fc = self._new_linear(1024, num_classes)
        for aux in (self.aux1, self.aux2):
            if aux is not None:
                aux.fc2 = self._new_linear(1024, num_classes)
        self.default_cfg["num_classes"] = num_classes

    def _new_linear(self, in_features: int, out_features: int) -> nn.Linear:
        layer = nn.Linear(in_features, out_features)
        self._init_layer(layer)
        return layer.to(self.conv1.conv.weight.device, self.conv1.conv.weight.dtype)


# The variants: nothing fixed, the constructor's defaults are torchvision's, the paper's network overrides them --------
register_variants(
    GoogLeNet,
    {
        "googlenet": Variant(
            {}, 'GoogLeNet in torchvision\'s weight-compatible layout (BN, 3×3 "5×5" branch): 6,624,904 parameters.'
        ),
        "googlenet_paper": Variant(
            {},
            "GoogLeNet as in Szegedy et al. 2015: no BN, LRN in the stem, 5×5 convs, dropout 0.4 (6,998,552).",
            {"batch_norm": False, "lrn": True, "branch5_kernel": 5, "pool4_kernel": 3, "drop_rate": 0.4},
        ),
    },
)
