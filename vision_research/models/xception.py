"""Xception — F. Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions", CVPR 2017
(section 3, Fig. 5; §4.3; Géron ch. 14).

Inception modules replaced by depthwise separable convolutions (a 3×3 depthwise conv, then a 1×1 pointwise
conv, no activation in between: §4.7) inside residual modules. Every conv and separable conv is followed by
BatchNorm; the separable convs inside a module are preceded by a ReLU.

    entry flow   conv 32@3×3 s2 ─ conv 64@3×3                       (VALID: 299 → 149 → 147)
                 module 128, module 256, module 728                 each: 2× [ReLU, sep conv, BN],
                                                                    3×3 s2 max-pool; shortcut 1×1 s2 conv + BN
                 (the first module starts without its ReLU: the stem's ReLU comes just before)
    middle flow  8× module 728: 3× [ReLU, sep conv 728, BN]; identity shortcut
    exit flow    module: [ReLU, sep conv 728, BN], [ReLU, sep conv 1024, BN], max-pool; 1×1 s2 shortcut
                 sep conv 1536 ─ BN ─ ReLU ─ sep conv 2048 ─ BN ─ ReLU ─ global average pool
    head         dropout 0.5 (§4.3, ImageNet) ─ FC 1000 (the paper's logistic regression layer)

Two regular convolutions and 34 separable ones (Géron ch. 14), 36 conv layers in 14 modules (§3).
Parameters: **22,855,952** with 1000 classes, the figure of the paper's Table 3 (asserted against timm's
``legacy_xception``).

The layout is exactly timm's ``legacy_xception`` (the Keras weights ported by Cadene): same tensors in the
same order, so its state dict loads by position (``load_pretrained(model, sd, source="timm")``) and
gives the same logits. That includes the choices the paper leaves open: the stem convs are unpadded, the
separable convs and the max-pools pad by 1, and BatchNorm keeps PyTorch's eps 1e-5 (Keras' is 1e-3).

Stages (``forward_features``), one per stride: ``stem`` (64 maps, stride 2), ``entry_flow.0`` (128, 4),
``entry_flow.1`` (256, 8), ``middle_flow`` (728, 16: the last entry-flow module and the middle flow),
``exit_flow`` (2048, 32). The module outputs are the residual sums, before the next module's ReLU (timm's
``features_only`` taps after that ReLU). The unpadded stem makes the first map smaller than H/2 (147 for 299).

Differences from the paper, and why: the initialisation is He's normal (fan-out) for the convolutions, as in
timm (the paper does not give one); the optional FC layers before the classifier (JFT experiments only) are
left out; ``drop_rate`` defaults to the paper's 0.5 for ImageNet (timm's default is 0).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..constants import dataset_stats
from .base import Backbone, default_cfg, feature_info
from .layers import ConvNormAct, SeparableConv2d
from .registry import Variant, register_variants


def separable_norm_act(in_chs: int, out_chs: int) -> nn.Sequential:
    """Separable 3×3 conv → BatchNorm → ReLU, the two layers after the exit flow's last module."""
    return nn.Sequential(
        OrderedDict(conv=SeparableConv2d(in_chs, out_chs, 3), bn=nn.BatchNorm2d(out_chs), act=nn.ReLU(inplace=True))
    )


class XceptionModule(nn.Module):
    """One residual module of Fig. 5: ``reps`` × [ReLU → separable 3×3 → BN], then a 3×3 max-pool when
    ``stride`` is 2; the shortcut is the identity, or a 1×1 conv (same stride) + BN when the shape changes.

    ``grow_first``: the first separable conv changes the width (entry and middle flow), else the last one
    (exit flow). ``start_with_relu=False`` drops the first ReLU (the first module follows the stem's ReLU).
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        reps: int,
        stride: int = 1,
        start_with_relu: bool = True,
        grow_first: bool = True,
    ) -> None:
        super().__init__()
        # The shortcut is registered before the main path: the reference checkpoints store it first.
        if in_chs != out_chs or stride != 1:
            self.shortcut: nn.Module = ConvNormAct(in_chs, out_chs, 1, stride, act=None)
        else:
            self.shortcut = nn.Identity()
        widths = [in_chs] + ([out_chs] * reps if grow_first else [in_chs] * (reps - 1) + [out_chs])
        layers: list[nn.Module] = []
        for index, (inc, outc) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            if index > 0 or start_with_relu:  # the first ReLU must not overwrite the shortcut's input
                layers.append(nn.ReLU(inplace=index > 0))
            layers += [SeparableConv2d(inc, outc, 3), nn.BatchNorm2d(outc)]
        if stride != 1:
            layers.append(nn.MaxPool2d(3, stride, padding=1))
        self.rep = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rep(x) + self.shortcut(x)


class Xception(Backbone):
    """Xception (Chollet 2017, Fig. 5); see the module docstring."""

    def __init__(
        self, num_classes: int = 1000, in_chans: int = 3, middle_repeats: int = 8, drop_rate: float = 0.5
    ) -> None:
        super().__init__()
        self.num_classes, self.drop_rate = num_classes, drop_rate
        self.num_features = 2048
        self.stem = nn.Sequential(ConvNormAct(in_chans, 32, 3, 2, padding=0), ConvNormAct(32, 64, 3, padding=0))
        self.entry_flow = nn.Sequential(
            XceptionModule(64, 128, 2, 2, start_with_relu=False),
            XceptionModule(128, 256, 2, 2),
            XceptionModule(256, 728, 2, 2),
        )
        self.middle_flow = nn.Sequential(*(XceptionModule(728, 728, 3) for _ in range(middle_repeats)))
        self.exit_flow = nn.Sequential(
            XceptionModule(728, 1024, 2, 2, grow_first=False),
            separable_norm_act(1024, 1536),
            separable_norm_act(1536, self.num_features),
        )
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        self.feature_info = [
            feature_info(64, 2, "stem"),
            feature_info(128, 4, "entry_flow.0"),
            feature_info(256, 8, "entry_flow.1"),
            feature_info(728, 16, "middle_flow"),
            feature_info(self.num_features, 32, "exit_flow"),
        ]
        self.default_cfg = default_cfg(
            (in_chans, 299, 299), *dataset_stats("inception", in_chans), num_classes, "stem.0.conv", "fc"
        )

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = self.stem(x)
        entry1 = self.entry_flow[0](stem)
        entry2 = self.entry_flow[1](entry1)
        middle = self.middle_flow(self.entry_flow[2](entry2))
        return [stem, entry1, entry2, middle, self.exit_flow(middle)]

    def forward_head(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.fc(self.dropout(self.flatten(self.global_pool(features[-1]))))

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes).to(self.fc.weight.device)
        self.num_classes = self.default_cfg["num_classes"] = num_classes


register_variants(
    Xception,
    {"xception": Variant({}, "Xception (Chollet 2017), timm ``legacy_xception``'s layout (22,855,952 parameters).")},
)
