"""AlexNet — A. Krizhevsky, I. Sutskever, G. E. Hinton, "ImageNet Classification with Deep Convolutional
Neural Networks", NIPS 2012 (section 3, Fig. 2; Géron ch. 14, whose two editions
disagree on the LRN constants and on the last pool: the paper decides both).

Two registered models share one class:

``alexnet_paper`` — the paper's network:

    In 3×227×227 ─ C1 conv 96@11×11 s4 ─ ReLU ─ LRN ─ pool ─ C2 conv 256@5×5 ─ ReLU ─ LRN ─ pool
                 ─ C3 conv 384@3×3 ─ C4 conv 384@3×3 ─ C5 conv 256@3×3 ─ pool
                 ─ FC6 4096 ─ FC7 4096 ─ FC8 1000          (ReLU after every conv and hidden FC)
    maps:        227 → 55 → 27 → 27 → 13 → 13 → 6

    - local response normalisation after the ReLU of C1 and C2 (§3.3), with the paper's constants
      n = 5, α = 1e-4, β = 0.75, k = 2 (``layers.LocalResponseNorm``, α not divided by n). Géron's table
      (ch. 14) numbers the pools as layers, so there it follows "C1 and C3";
    - overlapping max-pools, 3×3 with stride 2 (§3.4), after both LRNs and after C5 (13 → 6: kept, as in
      the paper and Géron's 3rd edition; the other edition's ch. 14 table omits it, leaving 13×13 for FC6);
    - dropout 0.5 on the outputs of FC6 and FC7 (§4.2);
    - the paper's initialisation (§5): weights N(0, 0.01); biases 1 in C2, C4, C5, FC6 and FC7, else 0.
    Options reproduce the paper's ablations: ``lrn=False`` (§3.3: +1.4 % top-1 error without it),
    ``overlap_pool=False`` (§3.4: 2×2 stride-2 pools, same map sizes, +0.4 %) and ``groups=2``, the
    two-GPU split: C2, C4 and C5 see only the maps of their own GPU (grouped convolutions) and the LRN
    sums over neighbours on the same GPU only; C3 and the FC layers see everything, as in Fig. 2.

    Parameters (hand count, asserted in the tests): C1 34,944; C2 614,656; C3 885,120; C4 1,327,488;
    C5 884,992; FC6 37,752,832; FC7 16,781,312; FC8 4,097,000 → **62,378,344**. With ``groups=2``
    C2 307,456, C4 663,936, C5 442,624 → **60,965,224**, the paper's "60 million".

``alexnet`` — torchvision's layout (Krizhevsky 2014, "One weird trick…"): 64/192/384/256/256 maps, padding
2 in C1 (224 → 55), no LRN, dropout before FC6 and FC7, PyTorch's default initialisation, 61,100,840
parameters. Module names and order are torchvision's, so its checkpoints load by name.

Both: an adaptive 6×6 average pool before FC6 (torchvision's; the identity at the default input size)
lets the head run on other sizes; ``flatten`` is a module so that ``convert.dense_to_conv`` applies.
Stages (``forward_features``): the three blocks ending at a max-pool, at strides 8, 16 and 32 (96/64,
256/192 and 256 maps). The convolutions and pools are VALID, so a stage map is a little smaller than
H / reduction (227: 27, 13, 6).

Differences from the paper, and why: the paper says 224×224 inputs, but 11×11 stride-4 VALID windows give
55×55 maps only from 227×227 (the known erratum; ``default_cfg`` says 227). Inputs are normalised with the
ImageNet mean and std (the paper subtracts the mean image only). PCA colour augmentation and the 10-crop
test are data/evaluation matters, not part of the model.
"""

from __future__ import annotations

import torch
from torch import nn

from ..constants import dataset_stats
from .base import PooledFCBackbone, default_cfg, feature_info, sequential_stages
from .layers import LocalResponseNorm
from .registry import Variant, register_variants

# The paper's LRN constants (§3.3); Géron ch. 14's two editions disagree on them (k = 1, α = 2e-5 vs k = 2).
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 2.0


class GroupedLocalResponseNorm(LocalResponseNorm):
    """LRN within each of ``groups`` contiguous channel groups: one GPU of the paper normalises its own maps."""

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0, groups: int = 1) -> None:
        super().__init__(size, alpha, beta, k)
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.groups == 1:
            return super().forward(x)
        n, c, h, w = x.shape
        return super().forward(x.reshape(n * self.groups, c // self.groups, h, w)).reshape(n, c, h, w)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, groups={self.groups}"


class AlexNet(PooledFCBackbone):
    """AlexNet in the paper's or torchvision's layout (``paper``); see the module docstring."""

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        paper: bool = True,
        lrn: bool = True,
        overlap_pool: bool = True,
        groups: int = 1,
        drop_rate: float = 0.5,
    ) -> None:
        super().__init__()
        if groups not in (1, 2):
            raise ValueError(f"AlexNet groups={groups}: 1 (one device) or 2 (the paper's two GPUs)")
        if not paper and (groups != 1 or not lrn or not overlap_pool):
            raise ValueError("torchvision's AlexNet has no LRN, grouped-convolution or pool option: use alexnet_paper")
        self.num_classes, self.paper, self.drop_rate = num_classes, paper, drop_rate
        c1, c2, c3, c4, c5 = (96, 256, 384, 384, 256) if paper else (64, 192, 384, 256, 256)

        def pool() -> nn.Module:
            return nn.MaxPool2d(3, 2) if overlap_pool else nn.MaxPool2d(2, 2)

        def norm() -> list[nn.Module]:
            if not paper:  # torchvision has no LRN modules at all
                return []
            if not lrn:  # an Identity keeps the indices (and checkpoint names) of the later layers
                return [nn.Identity()]
            return [GroupedLocalResponseNorm(LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K, groups)]

        block1 = [nn.Conv2d(in_chans, c1, 11, 4, 0 if paper else 2), nn.ReLU(inplace=True), *norm(), pool()]
        block2 = [nn.Conv2d(c1, c2, 5, padding=2, groups=groups), nn.ReLU(inplace=True), *norm(), pool()]
        block3 = [
            nn.Conv2d(c2, c3, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, 3, padding=1, groups=groups),
            nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, 3, padding=1, groups=groups),
            nn.ReLU(inplace=True),
            pool(),
        ]
        self.features = nn.Sequential(*block1, *block2, *block3)
        ends = [len(block1) - 1, len(block1) + len(block2) - 1, len(self.features) - 1]
        self._stage_ends = frozenset(ends)
        self.feature_info = [
            feature_info(c1, 8, f"features.{ends[0]}"),
            feature_info(c2, 16, f"features.{ends[1]}"),
            feature_info(c5, 32, f"features.{ends[2]}"),
        ]
        self.avgpool = nn.AdaptiveAvgPool2d(6)
        self.flatten = nn.Flatten()
        if paper:  # dropout on the outputs of FC6 and FC7 (§4.2)
            head = [nn.Linear(c5 * 36, 4096), nn.ReLU(inplace=True), nn.Dropout(drop_rate)]
            head += [nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(drop_rate)]
        else:  # torchvision: dropout on the inputs of FC6 and FC7
            head = [nn.Dropout(drop_rate), nn.Linear(c5 * 36, 4096), nn.ReLU(inplace=True)]
            head += [nn.Dropout(drop_rate), nn.Linear(4096, 4096), nn.ReLU(inplace=True)]
        self.classifier = nn.Sequential(*head, nn.Linear(4096, num_classes))
        if paper:
            self._init_paper()
        self.min_size = self._min_input_size()
        size = 227 if paper else 224
        mean, std = dataset_stats("imagenet", in_chans)
        self.default_cfg = default_cfg((in_chans, size, size), mean, std, num_classes, "features.0", "classifier.6")

    def _init_paper(self) -> None:
        """§5: weights N(0, 0.01); biases 1 in C2, C4, C5 and the hidden FC layers, 0 elsewhere."""
        layers = [m for m in self.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
        for index, layer in enumerate(layers):  # C1..C5, FC6..FC8
            nn.init.normal_(layer.weight, 0.0, 0.01)
            nn.init.constant_(layer.bias, 1.0 if index in (1, 3, 4, 5, 6) else 0.0)

    def _min_input_size(self) -> int:
        """The smallest square input whose last pool still has a 1×1 output."""

        def side_after(side: int) -> int:
            for layer in self.features:
                if isinstance(layer, nn.Conv2d | nn.MaxPool2d):
                    k, s, p = (layer.kernel_size, layer.stride, layer.padding)
                    k, s, p = (v[0] if isinstance(v, tuple) else v for v in (k, s, p))
                    side = (side + 2 * p - k) // s + 1
                    if side < 1:
                        return 0
            return side

        return next(side for side in range(1, 1024) if side_after(side) >= 1)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(
                f"this AlexNet needs inputs of at least {self.min_size}×{self.min_size} (an 11×11 stride-4 "
                f"convolution and three unpadded max-pools); got {tuple(x.shape[-2:])}"
            )
        return sequential_stages(self.features, x, self._stage_ends)

    def init_output_layer(self, layer: nn.Linear) -> None:
        """The paper's FC8 initialisation (§5: N(0, 0.01), bias 0); torchvision's layout keeps PyTorch's."""
        if self.paper:
            nn.init.normal_(layer.weight, 0.0, 0.01)
            nn.init.zeros_(layer.bias)


# The variants (name → architecture, description) ----------------------------------------------------------------------
register_variants(
    AlexNet,
    {
        # lrn / overlap_pool / groups are the paper's ablations: fixed at their defaults (no ablation), which is all
        # torchvision's layout accepts, so they are not its options
        "alexnet": Variant(
            {"paper": False, "lrn": True, "overlap_pool": True, "groups": 1},
            "AlexNet in torchvision's layout: 64/192/384/256/256 maps, no LRN (61,100,840 parameters).",
        ),
        "alexnet_paper": Variant(
            {"paper": True},
            "AlexNet as in Krizhevsky et al. 2012: 96/256/384/384/256 maps, LRN, overlapping pools (62,378,344).",
        ),
    },
)
