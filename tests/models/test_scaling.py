"""Compound scaling (Tan & Le 2019, eq. 3): multipliers, the α·β²·γ² ≈ 2 constraint, rounding, the released
B0-B7 table (not eq. 3), and ``scale_model`` on several families."""

import pytest
import torch
import torchvision

from vision_research.errors import ConfigError
from vision_research.models import count_parameters, create_model
from vision_research.models.scaling import (
    EFFICIENTNET_PARAMS,
    PAPER_SCALING,
    CompoundScaling,
    scale_depths,
    scale_model,
    scale_resolution,
    scale_widths,
)


def on_meta(build):
    with torch.device("meta"):
        return build()


def test_multipliers_are_powers_of_alpha_beta_gamma():
    assert CompoundScaling() == PAPER_SCALING == CompoundScaling(1.2, 1.1, 1.15)
    assert PAPER_SCALING.multipliers(1) == pytest.approx((1.2, 1.1, 1.15))
    assert PAPER_SCALING.multipliers(0) == (1.0, 1.0, 1.0)
    assert PAPER_SCALING.multipliers(2) == pytest.approx((1.44, 1.21, 1.3225))
    assert CompoundScaling(2.0, 1.0, 1.0).multipliers(3) == (8.0, 1.0, 1.0)


def test_product_constraint_is_about_two_and_the_notes_variants_are_not():
    assert PAPER_SCALING.flops_factor == pytest.approx(1.92027)
    assert PAPER_SCALING.check() is PAPER_SCALING
    # Study notes on Géron ch. 14 (3rd ed.): their γ = 1.1 gives a product of 1.76, rejected; their "sum" is not ≈ 2.
    with pytest.raises(ValueError, match="1.7569"):
        CompoundScaling(1.2, 1.1, 1.1).check()
    notes_sum = PAPER_SCALING.alpha + PAPER_SCALING.beta**2 + PAPER_SCALING.gamma**2
    assert notes_sum > 3.7  # 3.73: the notes' "α + β² + γ² ≈ 2" cannot hold with any of these values
    with pytest.raises(ValueError, match="gamma >= 1"):
        CompoundScaling(1.2, 1.1, 0.9)


def test_depth_rounding_is_ceil():
    b0 = [1, 2, 2, 3, 3, 4, 1]
    assert scale_depths(b0, 1.0) == b0
    assert scale_depths(b0, 1.1) == [2, 3, 3, 4, 4, 5, 2]  # B1
    assert scale_depths(b0, 3.1) == [4, 7, 7, 10, 10, 13, 4]  # B7
    assert scale_depths([5], 2.2) == [11]  # 5·2.2 = 11.000000000000002 in floats: no extra layer


def test_width_rounding_is_make_divisible_8():
    b0 = [32, 16, 24, 40, 80, 112, 192, 320, 1280]
    assert scale_widths(b0, 1.1) == [32, 16, 24, 48, 88, 120, 208, 352, 1408]  # B2 (torchvision's channels)
    assert scale_widths(b0, 2.0) == [64, 32, 48, 80, 160, 224, 384, 640, 2560]  # B7
    assert scale_widths([10], 1.0) == [16]  # 8 would be > 10 % below 10: one divisor up
    assert scale_widths([8], 0.25) == [8]  # never below the divisor
    assert scale_widths([100], 1.0, divisor=32) == [96]
    assert all(c % 8 == 0 for c in scale_widths(b0, 1.234))


def test_resolution_is_rounded_to_a_multiple_of_32():
    assert scale_resolution(224, 1.0) == 224
    assert scale_resolution(224, 1.15) == 256  # 257.6
    assert scale_resolution(224, 1.15**2) == 288  # 296.2
    assert scale_resolution(224, 1.15**7) == 608  # 595.8
    assert scale_resolution(10, 1.0) == 32
    assert scale_resolution(224, 1.15, divisor=8) == 256


def test_released_table():
    assert list(EFFICIENTNET_PARAMS) == [f"efficientnet_b{i}" for i in range(8)]
    assert [tuple(p) for p in EFFICIENTNET_PARAMS.values()] == [
        (1.0, 1.0, 224, 0.2),
        (1.0, 1.1, 240, 0.2),
        (1.1, 1.2, 260, 0.3),
        (1.2, 1.4, 300, 0.3),
        (1.4, 1.8, 380, 0.4),
        (1.6, 2.2, 456, 0.4),
        (1.8, 2.6, 528, 0.5),
        (2.0, 3.1, 600, 0.5),
    ]


def test_released_table_is_not_eq_3_but_grows_monotonically():
    rows = list(EFFICIENTNET_PARAMS.values())
    for phi in range(1, 8):
        depth, width, res_mult = PAPER_SCALING.multipliers(phi)
        released = rows[phi]
        compound = (round(width, 1), round(depth, 1), scale_resolution(224, res_mult, divisor=4))
        assert compound != (released.width_mult, released.depth_mult, released.resolution), phi
        # The released networks are cheaper than eq. 3 promises (FLOPs ∝ w²·d·r²).
        released_flops = released.width_mult**2 * released.depth_mult * (released.resolution / 224) ** 2
        assert released_flops < PAPER_SCALING.flops_factor**phi, phi
    for previous, current in zip(rows, rows[1:], strict=False):
        assert current.width_mult >= previous.width_mult and current.dropout >= previous.dropout
        assert current.depth_mult > previous.depth_mult and current.resolution > previous.resolution
    # B2 and B3 are close to eq. 3 at φ = 1 and 2 (the search point), then the table departs from it.
    assert (rows[2].width_mult, rows[2].depth_mult) == pytest.approx(PAPER_SCALING.multipliers(1)[1::-1])
    assert rows[3].depth_mult == pytest.approx(PAPER_SCALING.multipliers(2)[0], abs=0.05)


def test_scale_model_on_efficientnet_phi_1_has_b2s_width_and_depth():
    model, resolution = on_meta(lambda: scale_model("efficientnet_b0", 1))
    assert resolution == 256 and model.default_cfg["input_size"] == (3, 256, 256)
    b0 = on_meta(lambda: create_model("efficientnet_b0"))
    assert model.stage_depths == scale_depths(b0.stage_depths, 1.2)
    assert model.stage_widths == scale_widths(b0.stage_widths, 1.1)
    # φ = 1 gives (w, d) = (1.1, 1.2), B2's multipliers: B2's parameter count (dropout, resolution differ).
    assert count_parameters(model) == count_parameters(on_meta(torchvision.models.efficientnet_b2)) == 9_109_994
    _, res0 = on_meta(lambda: scale_model("efficientnet_b0", 0))
    assert res0 == 224


@pytest.mark.parametrize(
    "name, base_depths", [("mobilenet_v1", [1, 2, 2, 6, 2]), ("mobilenet_v2", [1, 2, 3, 4, 3, 3, 1])]
)
def test_scale_model_on_mobilenets(name, base_depths):
    base = on_meta(lambda: create_model(name))
    assert base.stage_depths == base_depths
    model, resolution = on_meta(lambda: scale_model(name, 2, num_classes=10))
    assert resolution == 288 and model.num_classes == 10
    assert model.stage_depths == scale_depths(base_depths, 1.44)
    assert model.stage_widths == scale_widths(base.stage_widths, 1.21)
    assert count_parameters(model) > count_parameters(base)


def test_scale_model_multiplies_given_multipliers_and_base_resolution():
    model, resolution = on_meta(lambda: scale_model("mobilenet_v2", 1, base_resolution=160, width_mult=0.5))
    assert resolution == 192  # 160·1.15 = 184 → nearest multiple of 32
    assert model.stage_widths == scale_widths([16, 24, 32, 64, 96, 160, 320], 0.55)


def test_scale_model_on_resnet18():
    base = on_meta(lambda: create_model("resnet18"))
    model, resolution = on_meta(lambda: scale_model("resnet18", 1))
    assert resolution == 256
    assert list(model.stage_depths) == scale_depths(list(base.stage_depths), 1.2) == [3, 3, 3, 3]
    assert list(model.stage_widths) == scale_widths(list(base.stage_widths), 1.1)
    assert count_parameters(model) > count_parameters(base)


def test_scale_model_rejects_families_without_multipliers():
    with pytest.raises(ConfigError, match="lenet5.*width_mult, depth_mult"):
        scale_model("lenet5", 1)
    with pytest.raises(ConfigError, match="timm"):
        scale_model("timm:resnet18", 1)
