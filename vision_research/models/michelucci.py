"""U. Michelucci's own models — *Advanced Applied Deep Learning: Convolutional Neural Networks and Object
Detection*, Apress 2019 (ch. 3, 4, 6, 8; code: github.com/Apress/advanced-applied-deep-learning).

One class, ``MichelucciCNN``, builds all eight from data: a conv base — a table of stages (convolutions with
ReLU, max-pools, dropout; a stage ends with its pool) or our VGG-16 conv base — and a head (flatten or a global
pool, hidden dense layers with ReLU and optional dropout, a linear classifier). The parameter counts are those
Keras' ``model.summary()`` prints in the book (hand sums, asserted in the tests):

``michelucci_mnist_cnn`` (ch. 3, MNIST 28×28×1): conv 32@5×5 VALID (832) ─ pool 2 ─ dropout 0.2 ─ flatten
    32·12·12 = 4,608 ─ fc 128 (589,952) ─ fc 10 (1,290) → **592,074**.
``michelucci_dogs_cats_cnn`` (ch. 4, 150×150×3): conv 16 (448) ─ pool ─ conv 64 (9,280) ─ pool ─ conv 128
    (73,856) ─ pool, all 3×3 VALID (150 → 148 → 74 → 72 → 36 → 34 → 17) ─ flatten 128·17·17 = 36,992 ─ fc 512
    (18,940,416) ─ fc 1 (513) → **19,024,513**. One logit, for BCE-with-logits (Keras: sigmoid).
``michelucci_dogs_cats_vgg16`` (ch. 4, transfer learning): VGG-16 conv base (14,714,688) ─ global average
    pool ─ fc 1024 (525,312) ─ fc 2 (2,050) → **15,242,050**. The book's listing ends in ``Dense(1,
    activation='softmax')``; a softmax over one unit is constantly 1, so that network cannot learn, and the
    printed count implies two outputs: here ``num_classes=2``.
``michelucci_sliding_window_cnn`` (ch. 6, the MNIST classifier slid over larger images): conv 32@3×3 (320) ─
    conv 64@3×3 (18,496), VALID ─ pool 2 ─ dropout 0.25 ─ flatten 64·12·12 = 9,216 ─ fc 128 (1,179,776) ─
    dropout 0.5 ─ fc 10 (1,290) → **1,199,882**.
``michelucci_histology_v1`` (ch. 8, 150×150×3, 8 tissue classes): ``Conv2D(32, 3, 3)`` is, in tf.keras,
    32 filters of 3×3 with **stride 3** (the third positional argument is ``strides``; Keras 1 read it as the
    kernel width): conv 32 (896, 150 → 50) ─ pool (25) ─ conv 64 stride 3 (18,496, 25 → 8) ─ pool (4) ─ flatten
    64·4·4 = 1,024 ─ fc 64 (65,600) ─ dropout 0.5 ─ fc 8 (520) → **85,512**.
``michelucci_histology_v2`` (ch. 8): conv 128@5×5 (9,728) ─ pool ─ dropout ─ conv 64@3×3 (73,792) ─ pool ─
    dropout ─ conv 64@3×3 (36,928) ─ pool ─ dropout, SAME (150 → 75 → 37 → 18) ─ flatten 64·18·18 = 20,736 ─
    fc 256 (5,308,672) ─ fc 64 (16,448) ─ fc 32 (2,080) ─ fc 8 (264) → **5,447,912**.
``michelucci_histology_v3`` (ch. 8): three blocks [3× conv 3×3 SAME ─ dropout 0.3 ─ pool 3] of 16, 32, 64 maps
    (5,088 + 23,136 + 92,352), then conv 128, 128, 256 (73,856 + 147,584 + 295,168) ─ dropout 0.3 ─ pool 3
    (150 → 50 → 16 → 5 → 1) ─ global max pool ─ fc 8 (2,056) → **639,240**.
``michelucci_histology_vgg16`` (ch. 8, v4): VGG-16 conv base at 150×150 (14,714,688; maps 512·4·4) ─ flatten
    8,192 ─ fc 1024 (8,389,632) ─ dropout 0.5 ─ fc 8 (8,200) → **23,112,520**.

Choices made to reproduce Keras (the book's listings and notebooks):
- Keras' default ``padding='valid'`` wherever the book gives no padding (the counts need it: SAME would give a
  larger flatten); pools are Keras' ``MaxPooling2D(n)`` = kernel n, stride n, VALID (torch's floor rounding).
- Every convolution and hidden dense layer is followed by ReLU, the activation of every listing of the book
  (assumed for v2's convolutions, whose activation this port does not have from the book).
- Dropout rates: as printed, except v2's, which this port does not have from the book: 0.3, the rate of the
  same chapter's v3 (notebook ``chapter8/02_Model_building.ipynb``).
- Output activations (softmax, sigmoid) are left out: the models return logits for ``CrossEntropyLoss``
  (or BCE-with-logits for one output). Histology v1's listing ends in a sigmoid under categorical
  cross-entropy; with logits and softmax cross-entropy that mismatch disappears.
- Keras flattens channels-last, torch channels-first: only a permutation of the first dense layer's rows.
- Initialisation: Keras' defaults (Glorot-uniform kernels, zero biases) for every layer this file builds;
  the VGG-16 base keeps ``vgg.VGG``'s (He normal), as it is meant to be loaded from a trained ``vgg16``.
- ``image_size`` (default: the book's) sets the flatten size of the flatten heads and ``default_cfg``.
- The dense head (pool, flatten, hidden layers, output layer) is one module, ``head``, the classifier
  ``default_cfg`` names: freezing the backbone (``callbacks.finetune``) and cached features train all of it, as the
  book trains its dense layers on a frozen VGG-16 base (ch. 4; ch. 8, v4); ``reset_classifier`` renews the output
  layer only.

The VGG-16 conv base is ``vgg.VGG``'s ``features`` (config D), with its module names, so a ``vgg16``
checkpoint (ours or torchvision's, ImageNet-trained) loads into it by name; ``remap_state_dict`` keeps only the
``features.*`` tensors of a torchvision or timm file. Stages (``forward_features``): the output of each pool —
for the VGG base its five blocks (64…512 maps, strides 2…32).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..constants import dataset_stats
from .base import Backbone, default_cfg, feature_info, sequential_stages
from .registry import Variant, register_variants
from .vgg import VGG


@dataclass(frozen=True)
class Conv:
    """``Conv2D(out_chs, kernel_size, strides=stride, padding=padding, activation='relu')``."""

    out_chs: int
    kernel_size: int
    stride: int = 1
    padding: str = "valid"  # Keras' names: valid | same


@dataclass(frozen=True)
class Pool:
    """``MaxPooling2D(size)``: kernel = stride = ``size``, VALID."""

    size: int


@dataclass(frozen=True)
class Drop:
    """``Dropout(rate)``."""

    rate: float


@dataclass(frozen=True)
class Head:
    """How the last map becomes logits: ``pool`` in flatten | avg | max (global), then ``hidden`` dense layers
    (width, dropout rate after its ReLU; 0 = none), then the linear classifier."""

    pool: str
    hidden: tuple[tuple[int, float], ...] = ()


Layer = Conv | Pool | Drop
Stages = tuple[tuple[Layer, ...], ...]
VGG16_BASE = "vgg16"


def _build_stages(stages: Stages, in_chans: int) -> tuple[list[nn.Module], list[dict[str, Any]]]:
    """The layers of a stage table and one ``feature_info`` entry per stage (the map after its last layer)."""
    layers: list[nn.Module] = []
    info: list[dict[str, Any]] = []
    chs, reduction = in_chans, 1
    for stage in stages:
        for layer in stage:
            if isinstance(layer, Conv):
                if layer.padding not in ("valid", "same"):
                    raise ValueError(f"{layer}: padding must be 'valid' or 'same'")
                layers += [nn.Conv2d(chs, layer.out_chs, layer.kernel_size, layer.stride, layer.padding), nn.ReLU()]
                chs, reduction = layer.out_chs, reduction * layer.stride
            elif isinstance(layer, Pool):
                layers.append(nn.MaxPool2d(layer.size))
                reduction *= layer.size
            else:
                layers.append(nn.Dropout(layer.rate))
        info.append(feature_info(chs, reduction, f"features.{len(layers) - 1}"))
    return layers, info


def _vgg16_base(in_chans: int) -> tuple[nn.Sequential, list[dict[str, Any]]]:
    """``vgg.VGG``'s VGG-16 conv base (Keras' ``include_top=False``), built on the meta device so that its
    124M-parameter classifier is never allocated, then materialised and initialised as ``VGG`` does."""
    with torch.device("meta"):
        vgg = VGG("D", in_chans=in_chans)
    features = vgg.features.to_empty(device="cpu")
    features.apply(VGG._init_weights)
    return features, [dict(info) for info in vgg.feature_info]


def _output_side(layers: nn.Sequential, side: int) -> int:
    """The height (= width) of the map ``layers`` make from a ``side``×``side`` input."""
    for layer in layers:
        if isinstance(layer, nn.Conv2d) and layer.padding != "same":
            pad = 0 if layer.padding == "valid" else layer.padding[0]
            side = (side + 2 * pad - layer.kernel_size[0]) // layer.stride[0] + 1
        elif isinstance(layer, nn.MaxPool2d):
            side = (side - layer.kernel_size) // layer.stride + 1
    return side


def _keras_init(module: nn.Module) -> None:
    """Keras' default initialisation: Glorot-uniform kernels, zero biases."""
    if isinstance(module, nn.Conv2d | nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)


class MichelucciCNN(Backbone):
    """A conv base (a stage table, or ``"vgg16"``) and a dense head, as Michelucci's Keras models; see the
    module docstring. ``stats`` names the data set whose channel statistics go into ``default_cfg``."""

    def __init__(
        self,
        stages: Stages | str,
        head: Head,
        stats: str = "imagenet",
        num_classes: int = 10,
        in_chans: int = 3,
        image_size: int = 150,
    ) -> None:
        super().__init__()
        if head.pool not in ("flatten", "avg", "max"):
            raise ValueError(f"head pool={head.pool!r}: choose one of flatten, avg, max")
        self.num_classes, self.head_spec, self.vgg16_base = num_classes, head, stages == VGG16_BASE
        if self.vgg16_base:
            self.features, self.feature_info = _vgg16_base(in_chans)
        elif isinstance(stages, str):
            raise ValueError(f"stages={stages!r}: a stage table or {VGG16_BASE!r}")
        else:
            layers, self.feature_info = _build_stages(stages, in_chans)
            self.features = nn.Sequential(*layers)
            self.features.apply(_keras_init)
        self._stage_ends = frozenset(int(info["module"].split(".")[1]) for info in self.feature_info)
        side = _output_side(self.features, image_size)
        if side < 1:
            raise ValueError(f"image_size={image_size} is too small for this network (its last map would be empty)")
        chs = self.feature_info[-1]["num_chs"]
        self.flat_features = chs * side * side if head.pool == "flatten" else chs
        pool = {"flatten": nn.Identity(), "avg": nn.AdaptiveAvgPool2d(1), "max": nn.AdaptiveMaxPool2d(1)}
        layers: list[nn.Module] = [pool[head.pool], nn.Flatten()]
        width = self.flat_features
        for out, rate in head.hidden:
            layers += [nn.Linear(width, out), nn.ReLU()] + ([nn.Dropout(rate)] if rate else [])
            width = out
        # The whole dense head is the classifier: what the book trains on a frozen base (ch. 4, ch. 8 v4).
        self.head = nn.Sequential(*layers, nn.Linear(width, num_classes))
        self.head.apply(_keras_init)
        self.default_cfg = default_cfg(
            (in_chans, image_size, image_size), *dataset_stats(stats, in_chans), num_classes, "features.0", "head"
        )

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return sequential_stages(self.features, x, self._stage_ends)

    def forward_head(self, features: list[torch.Tensor]) -> torch.Tensor:
        last = features[-1]
        if self.head_spec.pool == "flatten" and last[0].numel() != self.flat_features:
            size = self.default_cfg["input_size"][1]
            raise ValueError(
                f"this model was built for {size}×{size} inputs (flatten of {self.flat_features}); got last-stage "
                f"maps {tuple(last.shape[1:])}. Build it with image_size=<your size>."
            )
        return self.head(last)

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh output layer with ``num_classes`` units (the hidden dense layers kept)."""
        old = self.head[-1]
        self.head[-1] = nn.Linear(old.in_features, num_classes).to(old.weight.device)
        _keras_init(self.head[-1])
        self.num_classes = self.default_cfg["num_classes"] = num_classes

    def remap_state_dict(self, state_dict: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor] | None:
        """A torchvision or timm VGG-16 file: its ``features.*`` tensors (same names as ours), the rest dropped."""
        if not self.vgg16_base:
            return None
        return {k: v for k, v in state_dict.items() if k.startswith("features.")}


# The variants: the conv base and the head of each of the book's models (module docstring for the counts) -------------
def _histology_v3_block(width: int) -> tuple[Layer, ...]:
    return (*(Conv(width, 3, padding="same"),) * 3, Drop(0.3), Pool(3))


_MNIST = {"num_classes": 10, "in_chans": 1, "image_size": 28}
_HISTOLOGY = {"num_classes": 8}
MICHELUCCI_MODELS: dict[str, tuple[Stages | str, Head, str, dict[str, int], int, str]] = {
    # name: (conv base, head, statistics, option defaults, Keras' count, where in the book)
    "michelucci_mnist_cnn": (
        ((Conv(32, 5), Pool(2), Drop(0.2)),),
        Head("flatten", ((128, 0.0),)),
        "mnist",
        _MNIST,
        592_074,
        "ch. 3, the MNIST baseline CNN",
    ),
    "michelucci_dogs_cats_cnn": (
        ((Conv(16, 3), Pool(2)), (Conv(64, 3), Pool(2)), (Conv(128, 3), Pool(2))),
        Head("flatten", ((512, 0.0),)),
        "imagenet",
        {"num_classes": 1},
        19_024_513,
        "ch. 4, the dogs-vs-cats CNN (one logit)",
    ),
    "michelucci_dogs_cats_vgg16": (
        VGG16_BASE,
        Head("avg", ((1024, 0.0),)),
        "imagenet",
        {"num_classes": 2},
        15_242_050,
        "ch. 4, dogs vs cats by transfer learning from VGG-16",
    ),
    "michelucci_sliding_window_cnn": (
        ((Conv(32, 3), Conv(64, 3), Pool(2), Drop(0.25)),),
        Head("flatten", ((128, 0.5),)),
        "mnist",
        _MNIST,
        1_199_882,
        "ch. 6, the MNIST CNN of the sliding-window localisation",
    ),
    "michelucci_histology_v1": (
        ((Conv(32, 3, stride=3), Pool(2)), (Conv(64, 3, stride=3), Pool(2))),
        Head("flatten", ((64, 0.5),)),
        "imagenet",
        _HISTOLOGY,
        85_512,
        "ch. 8, histology CNN v1 (stride-3 convolutions)",
    ),
    "michelucci_histology_v2": (
        tuple((Conv(chs, kernel, padding="same"), Pool(2), Drop(0.3)) for chs, kernel in ((128, 5), (64, 3), (64, 3))),
        Head("flatten", ((256, 0.0), (64, 0.0), (32, 0.0))),
        "imagenet",
        _HISTOLOGY,
        5_447_912,
        "ch. 8, histology CNN v2",
    ),
    "michelucci_histology_v3": (
        (
            *(_histology_v3_block(width) for width in (16, 32, 64)),
            (Conv(128, 3, padding="same"), Conv(128, 3, padding="same"), Conv(256, 3, padding="same"))
            + (Drop(0.3), Pool(3)),
        ),
        Head("max"),
        "imagenet",
        _HISTOLOGY,
        639_240,
        "ch. 8, histology CNN v3 (global max pool)",
    ),
    "michelucci_histology_vgg16": (
        VGG16_BASE,
        Head("flatten", ((1024, 0.5),)),
        "imagenet",
        _HISTOLOGY,
        23_112_520,
        "ch. 8, histology v4: VGG-16 conv base and a dense head",
    ),
}

register_variants(
    MichelucciCNN,
    {
        name: Variant(
            {"stages": stages, "head": head, "stats": stats},
            f"Michelucci 2019, {where} ({count:,} parameters, as Keras prints them).",
            defaults,
        )
        for name, (stages, head, stats, defaults, count, where) in MICHELUCCI_MODELS.items()
    },
)
