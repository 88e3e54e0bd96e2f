"""LeNet-5 — Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, "Gradient-Based Learning Applied to Document
Recognition", Proc. IEEE 1998 (section II.B, Fig. 2, Table I, Appendix A).

Two registered models share one class:

``lenet5`` — the paper's network (also Géron ch. 14):

    In 1×32×32 ─ C1 conv 6@5×5 ─ S2 subsample ─ C3 conv 16@5×5 ─ S4 subsample ─ C5 conv 120@5×5
               ─ F6 fc 84 ─ RBF output 10
    maps:      32 → 28 → 14 → 10 → 5 → 1

    - squashing function f(a) = A·tanh(S·a), A = 1.7159, S = 2/3 (Appendix A);
    - S2/S4 "trainable subsampling": the 2×2 mean times a trainable coefficient plus a trainable bias per
      map, then the squashing function (the paper sums the four inputs; the mean only rescales the
      coefficient);
    - C3 partial connections of Table I (``c3_table=True``; ``False`` connects all 6 maps);
    - RBF output units y_i = Σ_j (x_j − w_ij)² with fixed ±1 prototypes (the paper drew them from
      7×12 bitmaps of the characters, "or at random": here at random, seeded). The logits are −y_i, so
      softmax cross-entropy on them is the paper's MAP criterion without its constant j.

    Trainable parameters (hand count, asserted in the tests):
    C1 6·(25+1) = 156; S2 6·2 = 12; C3 6·(3·25+1) + 9·(4·25+1) + 1·(6·25+1) = 1,516; S4 16·2 = 32;
    C5 120·(16·25+1) = 48,120; F6 84·(120+1) = 10,164; RBF 0 (840 fixed prototype values).
    Total **60,000**, the figure the paper gives. Without the table C3 has 2,416 and the total is 60,900.

``lenet5_modern`` — the modern variant of Géron ch. 14: ReLU, 2×2 max-pool, C3 fully
connected, a linear output layer trained with softmax cross-entropy. Same shapes.
C1 156 + C3 2,416 + C5 48,120 + F6 10,164 + out 10·(84+1) = 850 → **61,706** parameters.

Stages (``forward_features``): S2 (6 maps, stride 2), S4 (16 maps, stride 4), C5 (120 maps, stride 4).
The convolutions are unpadded, so a stage map has ⌊(H − border)/reduction⌋ pixels rather than H/reduction;
the head expects the 32×32 input the paper uses (C5 = 1×1).
"""

from __future__ import annotations

import torch
from torch import nn

from ..constants import dataset_stats
from .base import Backbone, default_cfg, feature_info
from .registry import Variant, register_variants

# Table I of the paper: the S2 maps (0..5) each C3 map (0..15) is connected to.
LENET5_C3_TABLE: tuple[tuple[int, ...], ...] = (
    *((i, (i + 1) % 6, (i + 2) % 6) for i in range(6)),  # maps 0-5: three contiguous maps
    *((i, (i + 1) % 6, (i + 2) % 6, (i + 3) % 6) for i in range(6)),  # maps 6-11: four contiguous
    *((0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5)),  # maps 12-14: four discontinuous
    (0, 1, 2, 3, 4, 5),  # map 15: all six
)


class ScaledTanh(nn.Module):
    """The paper's squashing function f(a) = A·tanh(S·a), A = 1.7159, S = 2/3 (Appendix A)."""

    def __init__(self, amplitude: float = 1.7159, slope: float = 2.0 / 3.0) -> None:
        super().__init__()
        self.amplitude, self.slope = amplitude, slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.amplitude * torch.tanh(self.slope * x)


class TrainableSubsampling(nn.Module):
    """LeNet's S-layer: 2×2 mean × a trainable coefficient + a trainable bias, per map (Géron ch. 14)."""

    def __init__(self, channels: int, kernel_size: int = 2) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(kernel_size)
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x) * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class ConnectionTableConv2d(nn.Module):
    """A convolution whose output map k sees only the input maps ``table[k]`` (LeNet-5's C3).

    Only the connected kernels are parameters (C3: 1,516, not 2,416); the dense kernel is assembled
    in the forward pass, so the convolution itself is one ``F.conv2d`` call.
    """

    def __init__(self, in_chans: int, table: tuple[tuple[int, ...], ...], kernel_size: int) -> None:
        super().__init__()
        mask = torch.zeros(len(table), in_chans, kernel_size, kernel_size, dtype=torch.bool)
        for out_map, in_maps in enumerate(table):
            if not in_maps or max(in_maps) >= in_chans or min(in_maps) < 0:
                raise ValueError(f"connection table row {out_map} = {in_maps} is not within 0..{in_chans - 1}")
            mask[out_map, list(in_maps)] = True
        self.register_buffer("mask", mask, persistent=False)
        self.in_chans, self.out_channels, self.kernel_size = in_chans, len(table), kernel_size
        # Uniform(±1/sqrt(fan_in)) like nn.Conv2d, with each output map's true fan-in.
        fan_in = mask.flatten(1).sum(1).float()
        weight_bound = fan_in.view(-1, 1, 1, 1).expand_as(mask)[mask].rsqrt()
        self.weight = nn.Parameter((torch.rand(int(mask.sum())) * 2 - 1) * weight_bound)
        self.bias = nn.Parameter((torch.rand(len(table)) * 2 - 1) * fan_in.rsqrt())

    def dense_weight(self) -> torch.Tensor:
        """The full [out, in, k, k] kernel with zeros where the table has no connection."""
        return torch.zeros(self.mask.shape, dtype=self.weight.dtype, device=self.weight.device).masked_scatter(
            self.mask, self.weight
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(x, self.dense_weight(), self.bias)


class RBFOutput(nn.Module):
    """Euclidean RBF output units y_i = Σ_j (x_j − w_ij)² with fixed ±1 prototypes; returns −y as logits."""

    def __init__(self, in_features: int, num_classes: int, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        codes = torch.randint(0, 2, (num_classes, in_features), generator=generator).float() * 2 - 1
        self.register_buffer("prototypes", codes)
        self.in_features, self.out_features = in_features, num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -torch.cdist(x, self.prototypes.to(x.dtype)).square()


ACTIVATIONS: dict[str, type[nn.Module]] = {"scaled_tanh": ScaledTanh, "tanh": nn.Tanh, "relu": nn.ReLU}


class LeNet5(Backbone):
    """LeNet-5 with each of the paper's choices as an option (see the module docstring).

    ``activation`` in scaled_tanh | tanh | relu; ``pooling`` in trainable | max | avg; ``output`` in
    rbf | linear; ``c3_table`` selects Table I's partial connections for C3.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        activation: str = "scaled_tanh",
        pooling: str = "trainable",
        c3_table: bool = True,
        output: str = "rbf",
    ) -> None:
        super().__init__()
        for option, value, choices in (
            ("activation", activation, ACTIVATIONS),
            ("pooling", pooling, ("trainable", "max", "avg")),
            ("output", output, ("rbf", "linear")),
        ):
            if value not in choices:
                raise ValueError(f"LeNet5 {option}={value!r}: choose one of {', '.join(choices)}")
        self.num_classes, self.output_kind = num_classes, output
        act = ACTIVATIONS[activation]
        self.c1 = nn.Sequential(nn.Conv2d(in_chans, 6, 5), act())
        self.s2 = self._subsampling(6, pooling, act)
        self.c3 = nn.Sequential(
            ConnectionTableConv2d(6, LENET5_C3_TABLE, 5) if c3_table else nn.Conv2d(6, 16, 5), act()
        )
        self.s4 = self._subsampling(16, pooling, act)
        self.c5 = nn.Sequential(nn.Conv2d(16, 120, 5), act())
        self.f6 = nn.Sequential(nn.Flatten(), nn.Linear(120, 84), act())
        self.output = self._make_output(num_classes)
        self.feature_info = [feature_info(6, 2, "s2"), feature_info(16, 4, "s4"), feature_info(120, 4, "c5")]
        self.default_cfg = default_cfg(
            (in_chans, 32, 32), *dataset_stats("mnist", in_chans), num_classes, "c1.0", "output"
        )

    @staticmethod
    def _subsampling(channels: int, pooling: str, act: type[nn.Module]) -> nn.Module:
        if pooling == "trainable":  # the affine map of the S-layer is followed by the squashing function
            return nn.Sequential(TrainableSubsampling(channels), act())
        return nn.MaxPool2d(2) if pooling == "max" else nn.AvgPool2d(2)

    def _make_output(self, num_classes: int) -> nn.Module:
        return RBFOutput(84, num_classes) if self.output_kind == "rbf" else nn.Linear(84, num_classes)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[-1] < 32 or x.shape[-2] < 32:
            raise ValueError(
                f"LeNet-5 needs inputs of at least 32×32 (unpadded 5×5 convolutions); got {tuple(x.shape[-2:])}. "
                "Pad MNIST's 28×28 digits by 2 pixels (data.image_size=32)."
            )
        s2 = self.s2(self.c1(x))
        s4 = self.s4(self.c3(s2))
        return [s2, s4, self.c5(s4)]

    def forward_head(self, features: list[torch.Tensor]) -> torch.Tensor:
        c5 = features[-1]
        if c5.shape[-2:] != (1, 1):
            raise ValueError(
                f"LeNet-5's head needs a 32×32 input (C5 must be 1×1); got C5 maps of {tuple(c5.shape[-2:])}. "
                "Resize the images to 32×32, or use forward_features for larger inputs."
            )
        return self.output(self.f6(c5))

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.output = self._make_output(num_classes).to(self.f6[1].weight.device)
        self.default_cfg["num_classes"] = num_classes


# The variants: nothing fixed, the constructor's defaults are the paper's, the modern network overrides them -----------
register_variants(
    LeNet5,
    {
        "lenet5": Variant(
            {}, "LeNet-5 as in LeCun et al. 1998: scaled tanh, trainable subsampling, C3 table, RBF output (60,000)."
        ),
        "lenet5_modern": Variant(
            {},
            "LeNet-5 with ReLU, max-pool, a full C3 and a linear softmax head (61,706 parameters).",
            {"activation": "relu", "pooling": "max", "c3_table": False, "output": "linear"},
        ),
    },
)
