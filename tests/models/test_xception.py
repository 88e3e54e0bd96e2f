"""Xception (Chollet 2017): timm legacy_xception parity, 2 + 34 convolutions, one stage per stride."""

import pytest
import timm
import torch
from torch import nn

from tests.models.contract import assert_one_step_reduces_loss, assert_same_outputs
from vision_research.models import count_parameters, create_model
from vision_research.models.xception import XceptionModule


def assert_same_logits_to_scale(ours: nn.Module, reference: nn.Module, input_size: tuple[int, ...]) -> None:
    """After ``assert_same_outputs`` (absolute 1e-4, loose for the small logits of random weights): 1e-5 of scale."""
    x = torch.randn(*input_size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, got = reference.eval()(x), ours.eval()(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


def stage_sides(size: int) -> list[int]:
    """Map sides per stage: unpadded 3×3 s2 and 3×3 stem convs, then four 3×3 s2 pools padded by 1."""
    side = (size - 3) // 2 + 1 - 2
    sides = [side]
    for _ in range(4):
        side = (side - 1) // 2 + 1
        sides.append(side)
    return sides


def test_parameter_count_equals_timm_legacy_xception():
    with torch.device("meta"):
        reference = timm.create_model("legacy_xception")
        model = create_model("xception")
    assert count_parameters(model) == count_parameters(reference) == 22_855_952
    assert len(model.state_dict()) == len(reference.state_dict())


def test_timm_weights_give_timm_outputs():
    torch.manual_seed(0)
    model, reference = create_model("xception"), timm.create_model("legacy_xception")
    assert_same_outputs(model, reference, "timm", (1, 3, 71, 71))
    assert_same_logits_to_scale(model, reference, (1, 3, 71, 71))


def test_two_convolutions_then_34_separable_ones():
    with torch.device("meta"):
        model = create_model("xception")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    depthwise = [m for m in convs if m.groups > 1]
    regular = [m for m in convs if m.groups == 1 and m.kernel_size == (3, 3)]
    assert len(regular) == 2 and len(depthwise) == 34  # Géron ch. 14; 36 conv layers in the paper's §3
    assert all(m.groups == m.in_channels == m.out_channels for m in depthwise)  # depth multiplier 1
    shortcuts = [
        m for m in model.modules() if isinstance(m, XceptionModule) and not isinstance(m.shortcut, nn.Identity)
    ]
    assert len(shortcuts) == 4  # three entry-flow modules and the exit-flow module
    assert [len(model.entry_flow), len(model.middle_flow)] == [3, 8]


def test_modules_put_relu_before_each_separable_conv():
    first, middle = create_model("xception").entry_flow[0], XceptionModule(8, 8, 3)
    first_kinds = [type(m).__name__ for m in first.rep]  # no leading ReLU: the stem's ReLU precedes it
    assert first_kinds == ["SeparableConv2d", "BatchNorm2d", "ReLU", "SeparableConv2d", "BatchNorm2d", "MaxPool2d"]
    assert [type(m).__name__ for m in middle.rep] == ["ReLU", "SeparableConv2d", "BatchNorm2d"] * 3
    assert not middle.rep[0].inplace  # the identity shortcut still needs the module's input
    x = torch.randn(1, 8, 5, 5)
    torch.testing.assert_close(middle.eval()(x), middle.rep(x) + x)


@pytest.mark.parametrize("size", [71, 64])
def test_one_stage_per_stride(size):
    model = create_model("xception", num_classes=10).eval()
    assert [(f["num_chs"], f["reduction"]) for f in model.feature_info] == [
        (64, 2),
        (128, 4),
        (256, 8),
        (728, 16),
        (2048, 32),
    ]
    stage_modules = [model.get_submodule(f["module"]) for f in model.feature_info]
    assert stage_modules == [model.stem, model.entry_flow[0], model.entry_flow[1], model.middle_flow, model.exit_flow]
    with torch.no_grad():
        features = model.forward_features(torch.randn(1, 3, size, size))
    assert [f.shape[1] for f in features] == [f["num_chs"] for f in model.feature_info]
    assert [f.shape[-1] for f in features] == stage_sides(size)
    # From the second stage on the maps are ⌈H / reduction⌉ (±1) like SAME-padded strides; the unpadded stem
    # is 2-3 pixels short of H/2 (this is why contract.assert_feature_contract cannot be used here).
    for fmap, info in zip(features[1:], model.feature_info[1:], strict=True):
        assert abs(fmap.shape[-1] - -(-size // info["reduction"])) <= 1


def test_figure_5_sizes_at_299():
    assert stage_sides(299) == [147, 74, 37, 19, 10]  # 299 → 149 → 147; 19×19×728 middle flow (Fig. 5)
    assert create_model("xception").default_cfg["input_size"] == (3, 299, 299)


def test_one_training_step_reduces_the_loss():
    torch.manual_seed(0)
    assert_one_step_reduces_loss(create_model("xception", num_classes=10), input_size=(1, 3, 71, 71))


def test_options_head_and_classifier_reset():
    model = create_model("xception", num_classes=10, in_chans=1, drop_rate=0.2, middle_repeats=2)
    assert model.dropout.p == 0.2 and len(model.middle_flow) == 2
    module_params = count_parameters(model.middle_flow[0])
    assert module_params == 3 * (728 * 9 + 728 * 728 + 2 * 728)  # depthwise + pointwise + BN per unit
    full = create_model("xception", num_classes=10, in_chans=1)
    assert count_parameters(full) - count_parameters(model) == 6 * module_params
    model.reset_classifier(4)
    assert model.get_classifier().out_features == 4 and model.default_cfg["num_classes"] == 4
    assert model.eval()(torch.randn(1, 1, 71, 71)).shape == (1, 4)
