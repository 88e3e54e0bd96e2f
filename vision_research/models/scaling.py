"""Compound scaling — M. Tan, Q. V. Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML 2019 (§3.3, eq. 3; §4.2 for B1–B7). A general tool: it scales any registered family whose
builder accepts ``width_mult`` and ``depth_mult`` (MobileNet v1/v2, EfficientNet, ResNet).

Eq. 3, for a user-chosen compound coefficient φ:

    depth d = α^φ,   width w = β^φ,   resolution r = γ^φ,   s.t. α·β²·γ² ≈ 2,  α ≥ 1, β ≥ 1, γ ≥ 1.

A conv net's FLOPs grow as d·w²·r², so the φ-scaled network costs (α·β²·γ²)^φ ≈ 2^φ times the baseline.
The paper's grid search at φ = 1 on B0 gave α = 1.2, β = 1.1, γ = 1.15: α·β²·γ² = 1.2·1.21·1.3225 = 1.92.

⚠ Study notes on Géron ch. 14 (3rd ed.) write "α + β² + γ² ≈ 2" and γ = 1.1. The sum is 3.73 (3.62 with
γ = 1.1), nowhere near 2: the constraint is the product, because FLOPs multiply. With γ = 1.1 the product
is 1.76, which ``CompoundScaling.check`` rejects: the paper's values are used, as FLOPs demand.

Rounding, as in the released code (``round_filters`` / ``round_repeats`` of efficientnet_model.py):

- widths: ``make_divisible(c·w, 8)``, the nearest multiple of 8, never below 8 and never more than 10 %
  below c·w;
- depths: ``ceil(n·d)``. Here n·d is first rounded to 6 decimals, so float noise (5·2.2 =
  11.000000000000002) does not add a layer. The released multipliers never hit such a case, so every
  released count is unchanged;
- resolution (not rounded in the paper): the nearest multiple of **32**, at least 32. Every stride-32
  network then has whole-number maps at every stage (r/2 … r/32), which the FCN / YOLO heads need to fuse
  or grid them. The released resolutions are not multiples of 32 (260, 300, 380…), nor even of 8.

The released B0–B7 table (``EFFICIENTNET_PARAMS``; efficientnet_builder.efficientnet_params of the
official TF code, and torchvision) is **not** eq. 3 applied with φ = 1…7. The paper says B1–B7 come from
eq. 3, but the released multipliers were rounded and tuned by hand. Their width, depth, resolution and
dropout grow monotonically with the index, but the growth is slower than eq. 3, and mostly through depth:

    φ   eq. 3 (w, d, r)          released (w, d, r)      FLOPs × eq. 3 / released (≈ w²·d·r²)
    1   1.100, 1.200, 257.6      1.0, 1.1, 240           1.92 / 1.26
    2   1.210, 1.440, 296.2      1.1, 1.2, 260           3.69 / 1.96
    3   1.331, 1.728, 340.7      1.2, 1.4, 300           7.08 / 3.62
    7   1.949, 3.583, 595.8      2.0, 3.1, 600          96.3  / 89.0

B2 and B3 are close to eq. 3 at φ = 1 and 2. Tests check both facts, so neither can change silently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from torch import nn

from ..errors import ConfigError
from .layers import make_divisible

RESOLUTION_DIVISOR = 32  # scaled input resolutions are multiples of the networks' total stride


class EfficientNetParams(NamedTuple):
    """One row of the released scaling table: multipliers on B0, input resolution, classifier dropout."""

    width_mult: float
    depth_mult: float
    resolution: int
    dropout: float


# The released table (official TF efficientnet_builder.py; torchvision uses the same values).
EFFICIENTNET_PARAMS: dict[str, EfficientNetParams] = {
    "efficientnet_b0": EfficientNetParams(1.0, 1.0, 224, 0.2),
    "efficientnet_b1": EfficientNetParams(1.0, 1.1, 240, 0.2),
    "efficientnet_b2": EfficientNetParams(1.1, 1.2, 260, 0.3),
    "efficientnet_b3": EfficientNetParams(1.2, 1.4, 300, 0.3),
    "efficientnet_b4": EfficientNetParams(1.4, 1.8, 380, 0.4),
    "efficientnet_b5": EfficientNetParams(1.6, 2.2, 456, 0.4),
    "efficientnet_b6": EfficientNetParams(1.8, 2.6, 528, 0.5),
    "efficientnet_b7": EfficientNetParams(2.0, 3.1, 600, 0.5),
}


def check_multipliers(model: str, width_mult: float, depth_mult: float) -> None:
    """A ``ValueError`` naming ``model`` unless both multipliers are positive."""
    if width_mult <= 0 or depth_mult <= 0:
        raise ValueError(f"{model} needs width_mult, depth_mult > 0; got {width_mult}, {depth_mult}")


def scale_depths(depths: Sequence[int], depth_mult: float) -> list[int]:
    """Repeats per stage times ``depth_mult``, rounded up (the released ``round_repeats``)."""
    return [int(math.ceil(round(n * depth_mult, 6))) for n in depths]


def scale_widths(widths: Sequence[int], width_mult: float, divisor: int = 8) -> list[int]:
    """Channels times ``width_mult``, rounded to a multiple of ``divisor`` (the released ``round_filters``)."""
    return [int(make_divisible(c * width_mult, divisor)) for c in widths]


def scale_resolution(resolution: int, resolution_mult: float, divisor: int = RESOLUTION_DIVISOR) -> int:
    """Input side times ``resolution_mult``, rounded to the nearest multiple of ``divisor`` (at least one)."""
    return max(divisor, int(resolution * resolution_mult / divisor + 0.5) * divisor)


@dataclass(frozen=True)
class CompoundScaling:
    """Eq. 3 with coefficients α (depth), β (width), γ (resolution); the defaults are the paper's."""

    alpha: float = 1.2
    beta: float = 1.1
    gamma: float = 1.15

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "gamma"):
            if getattr(self, name) < 1.0:
                raise ValueError(f"CompoundScaling needs {name} >= 1 (eq. 3); got {getattr(self, name)}")

    @property
    def flops_factor(self) -> float:
        """α·β²·γ²: the FLOPs multiple per unit of φ (≈ 2 by the paper's constraint; 1.92 for its values)."""
        return self.alpha * self.beta**2 * self.gamma**2

    def check(self, target: float = 2.0, rel_tol: float = 0.05) -> CompoundScaling:
        """Raise ``ValueError`` unless α·β²·γ² is within ``rel_tol`` of ``target``; returns self."""
        if abs(self.flops_factor - target) > rel_tol * target:
            raise ValueError(
                f"α·β²·γ² = {self.alpha}·{self.beta}²·{self.gamma}² = {self.flops_factor:.4f} is not ≈ {target} "
                f"(±{rel_tol:.0%}): φ would not double the FLOPs per step"
            )
        return self

    def multipliers(self, phi: float) -> tuple[float, float, float]:
        """(depth_mult, width_mult, resolution_mult) = (α^φ, β^φ, γ^φ)."""
        return self.alpha**phi, self.beta**phi, self.gamma**phi

    def scale_model(
        self, name: str, phi: float, base_resolution: int | None = None, **kwargs: Any
    ) -> tuple[nn.Module, int]:
        """Build the registered model ``name`` scaled by φ, and return it with its scaled input resolution.

        The builder's ``width_mult`` / ``depth_mult`` (its defaults, or values given in ``kwargs``) are
        multiplied by β^φ / α^φ. The resolution is ``base_resolution`` (default: the model's
        ``default_cfg`` input size) × γ^φ, rounded to a multiple of 32, and is written to the model's
        ``default_cfg``. Other ``kwargs`` go to the builder unchanged.
        """
        from .registry import TIMM_PREFIX, create_model, model_options

        if name.startswith(TIMM_PREFIX):
            raise ConfigError(f"scale_model needs a family of the framework, not a timm model: '{name}'")
        options = model_options(name)
        lacking = [opt for opt in ("width_mult", "depth_mult") if opt not in options]
        if lacking:
            raise ConfigError(
                f"model '{name}' cannot be compound-scaled: its builder has no option {', '.join(lacking)}"
            )
        depth_mult, width_mult, resolution_mult = self.multipliers(phi)
        kwargs["width_mult"] = kwargs.get("width_mult", options["width_mult"]) * width_mult
        kwargs["depth_mult"] = kwargs.get("depth_mult", options["depth_mult"]) * depth_mult
        model = create_model(name, **kwargs)
        cfg = getattr(model, "default_cfg", None)
        if base_resolution is None:
            if not cfg or "input_size" not in cfg:
                raise ConfigError(f"model '{name}' has no default_cfg input size: pass base_resolution")
            base_resolution = int(cfg["input_size"][-1])
        resolution = scale_resolution(base_resolution, resolution_mult)
        if cfg and "input_size" in cfg:
            model.default_cfg = {**cfg, "input_size": (cfg["input_size"][0], resolution, resolution)}
        return model, resolution


PAPER_SCALING = CompoundScaling(alpha=1.2, beta=1.1, gamma=1.15)


def scale_model(name: str, phi: float, base_resolution: int | None = None, **kwargs: Any) -> tuple[nn.Module, int]:
    """``PAPER_SCALING.scale_model``: the registered model ``name`` scaled by φ with α=1.2, β=1.1, γ=1.15."""
    return PAPER_SCALING.scale_model(name, phi, base_resolution, **kwargs)
