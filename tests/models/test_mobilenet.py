"""MobileNet v1 (Howard et al. 2017) and v2 (Sandler et al. 2018): counts, reference outputs, stages, options."""

import pytest
import timm
import torch
import torchvision
from torch import nn

from tests.models.contract import assert_feature_contract, assert_one_step_reduces_loss, assert_same_outputs
from vision_research.models import count_parameters, create_model
from vision_research.models.mobilenet import InvertedResidual, last_block_per_resolution


def meta_count(build) -> int:
    """Parameter count without allocating or initialising the weights."""
    with torch.device("meta"):
        return count_parameters(build())


def activations(model: nn.Module) -> set[type]:
    return {type(m) for m in model.modules() if isinstance(m, nn.ReLU | nn.ReLU6 | nn.SiLU | nn.Sigmoid)}


def test_mobilenet_v1_parameter_count_by_hand_from_table_1():
    def unit(c_in: int, c_out: int) -> int:  # 3×3 depthwise + BN, 1×1 pointwise + BN
        return 9 * c_in + 2 * c_in + c_in * c_out + 2 * c_out

    channels = [32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
    total = 3 * 9 * 32 + 2 * 32  # stem conv 3×3×3×32 + BN
    total += sum(unit(a, b) for a, b in zip(channels, channels[1:], strict=False))
    total += 1024 * 1000 + 1000
    assert total == 4_231_976
    assert meta_count(lambda: create_model("mobilenet_v1")) == total


@pytest.mark.parametrize("width_mult", [1.0, 1.25])
def test_mobilenet_v1_count_equals_timm(width_mult):
    timm_name = {1.0: "mobilenetv1_100", 1.25: "mobilenetv1_125"}[width_mult]
    ours = meta_count(lambda: create_model("mobilenet_v1", width_mult=width_mult))
    assert ours == meta_count(lambda: timm.create_model(timm_name))
    if width_mult == 1.0:
        assert ours == 4_231_976


def test_mobilenet_v1_relu6_reproduces_timm_outputs():
    assert_same_outputs(
        create_model("mobilenet_v1", act="relu6"), timm.create_model("mobilenetv1_100"), "timm", (1, 3, 64, 64)
    )


@pytest.mark.parametrize("width_mult, expected", [(1.0, 3_504_872), (0.5, None), (1.4, None)])
def test_mobilenet_v2_count_equals_torchvision(width_mult, expected):
    ours = meta_count(lambda: create_model("mobilenet_v2", width_mult=width_mult))
    assert ours == meta_count(lambda: torchvision.models.mobilenet_v2(width_mult=width_mult))
    if expected is not None:
        assert ours == expected


def test_mobilenet_v2_reproduces_torchvision_outputs():
    assert_same_outputs(create_model("mobilenet_v2"), torchvision.models.mobilenet_v2(), "torchvision", (1, 3, 64, 64))


@pytest.mark.parametrize(
    "name, stages",
    [
        ("mobilenet_v1", [(64, 2), (128, 4), (256, 8), (512, 16), (1024, 32)]),
        ("mobilenet_v2", [(16, 2), (24, 4), (32, 8), (96, 16), (320, 32)]),
    ],
)
def test_stages_are_the_last_block_of_each_resolution(name, stages):
    model = create_model(name, num_classes=10)
    assert [(f["num_chs"], f["reduction"]) for f in model.feature_info] == stages
    assert all(f["module"].startswith("blocks.") for f in model.feature_info)
    assert_feature_contract(model, sizes=(64, 96))


def test_last_block_per_resolution_follows_the_strides():
    assert last_block_per_resolution([1, 2, 2, 2, 1, 2, 1]) == [0, 1, 2, 4, 6]
    assert last_block_per_resolution([1, 2, 2, 2, 2]) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2"])
def test_one_training_step_reduces_the_loss(name):
    torch.manual_seed(0)
    assert_one_step_reduces_loss(create_model(name, num_classes=10), input_size=(2, 3, 64, 64))


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2"])
def test_head_default_cfg_and_reset_classifier(name):
    model = create_model(name, num_classes=5).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_head(model.forward_features(x)), model(x))
    cfg = model.default_cfg
    assert cfg["input_size"] == (3, 224, 224)
    assert cfg["mean"] == (0.485, 0.456, 0.406) and cfg["std"] == (0.229, 0.224, 0.225)
    assert model.get_submodule(cfg["first_conv"]).in_channels == 3
    model.reset_classifier(3)
    assert model.get_classifier().out_features == 3 and cfg["num_classes"] == 3
    with torch.no_grad():
        assert model(x).shape == (1, 3)


def test_mobilenet_v1_width_and_depth_multipliers():
    half = create_model("mobilenet_v1", width_mult=0.5)
    assert half.stage_widths == [32, 64, 128, 256, 512] and half.stem.conv.out_channels == 16
    quarter = create_model("mobilenet_v1", width_mult=0.25)  # the paper's smallest α: int(α·c) exactly
    assert quarter.stage_widths == [16, 32, 64, 128, 256] and quarter.classifier.in_features == 256
    deep = create_model("mobilenet_v1", depth_mult=1.5)
    assert deep.stage_depths == [2, 3, 3, 9, 3] and [len(s) for s in deep.blocks] == deep.stage_depths
    assert create_model("mobilenet_v1").stage_depths == [1, 2, 2, 6, 2]


def test_mobilenet_v1_unit_is_depthwise_then_pointwise_each_with_bn_relu():
    unit = create_model("mobilenet_v1").blocks[1][0]
    assert unit.dw.conv.groups == unit.dw.conv.in_channels == 64 and unit.dw.conv.stride == (2, 2)
    assert unit.pw.conv.kernel_size == (1, 1) and unit.pw.conv.out_channels == 128
    assert isinstance(unit.dw.bn, nn.BatchNorm2d) and type(unit.dw.act) is nn.ReLU and type(unit.pw.act) is nn.ReLU
    assert activations(create_model("mobilenet_v1")) == {nn.ReLU}  # the stem too
    assert activations(create_model("mobilenet_v1", act="relu6")) == {nn.ReLU6}
    assert activations(create_model("mobilenet_v2")) == {nn.ReLU6}
    with pytest.raises(ValueError, match="act='gelu'"):
        create_model("mobilenet_v1", act="gelu")


def test_mobilenet_v2_width_mult_keeps_the_last_conv_at_1280_below_one():
    narrow = create_model("mobilenet_v2", width_mult=0.5)
    assert narrow.stage_widths == [8, 16, 16, 32, 48, 80, 160]
    assert narrow.conv_head.conv.out_channels == 1280
    assert create_model("mobilenet_v2", width_mult=1.4).conv_head.conv.out_channels == 1792
    assert create_model("mobilenet_v2", depth_mult=2.0).stage_depths == [2, 4, 6, 8, 6, 6, 2]


def test_inverted_residual_is_linear_bottleneck_with_shortcut_only_when_shapes_match():
    block = InvertedResidual(24, 24, stride=1, expand_ratio=6)
    assert block.has_shortcut and block.expand.conv.out_channels == 144
    assert not hasattr(block.project, "act")  # linear bottleneck: no activation after the projection
    assert not InvertedResidual(24, 32, stride=1).has_shortcut
    assert not InvertedResidual(24, 24, stride=2).has_shortcut
    assert isinstance(InvertedResidual(32, 16, expand_ratio=1).expand, nn.Identity)
    block.eval()
    x = torch.randn(1, 24, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), x + block.project(block.se(block.dw(block.expand(x)))))
