"""EfficientNet-B0…B7 (Tan & Le 2019): torchvision counts, outputs, B1-B7 derived from B0, released table."""

import pytest
import timm
import torch
import torchvision
from torch import nn

from tests.models.contract import assert_feature_contract, assert_one_step_reduces_loss, assert_same_outputs
from vision_research.models import count_parameters, create_model, model_options
from vision_research.models.efficientnet import EFFICIENTNET_B0_STAGES
from vision_research.models.layers import DropPath, SEModule
from vision_research.models.scaling import EFFICIENTNET_PARAMS, scale_depths, scale_widths

NAMES = [f"efficientnet_b{i}" for i in range(8)]
TORCHVISION_COUNTS = {
    "efficientnet_b0": 5_288_548,
    "efficientnet_b1": 7_794_184,
    "efficientnet_b2": 9_109_994,
    "efficientnet_b3": 12_233_232,
    "efficientnet_b4": 19_341_616,
    "efficientnet_b5": 30_389_784,
    "efficientnet_b6": 43_040_704,
    "efficientnet_b7": 66_347_960,
}
# The released (width, depth, resolution, dropout) table, as the brief and the TF code give it.
RELEASED = {
    "efficientnet_b0": (1.0, 1.0, 224, 0.2),
    "efficientnet_b1": (1.0, 1.1, 240, 0.2),
    "efficientnet_b2": (1.1, 1.2, 260, 0.3),
    "efficientnet_b3": (1.2, 1.4, 300, 0.3),
    "efficientnet_b4": (1.4, 1.8, 380, 0.4),
    "efficientnet_b5": (1.6, 2.2, 456, 0.4),
    "efficientnet_b6": (1.8, 2.6, 528, 0.5),
    "efficientnet_b7": (2.0, 3.1, 600, 0.5),
}


def on_meta(build):
    """Build without allocating or initialising weights (structure and counts only)."""
    with torch.device("meta"):
        return build()


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_equals_torchvision(name):
    ours = count_parameters(on_meta(lambda: create_model(name)))
    reference = count_parameters(on_meta(getattr(torchvision.models, name)))
    assert ours == reference == TORCHVISION_COUNTS[name]


@pytest.mark.parametrize("name", NAMES)
def test_stages_match_torchvision_block_for_block(name):
    ours = on_meta(lambda: create_model(name))
    ref = on_meta(getattr(torchvision.models, name))
    ref_stages = list(ref.features)[1:-1]
    assert ours.stage_depths == [len(stage) for stage in ref_stages]
    assert ours.stage_widths == [stage[-1].block[-1][0].out_channels for stage in ref_stages]
    assert ours.stem.conv.out_channels == ref.features[0][0].out_channels
    assert ours.conv_head.conv.out_channels == ref.features[-1][0].out_channels
    # Stochastic depth grows linearly with the block index: the same rates as torchvision on residual blocks.
    ours_p = [b.drop_path.drop_prob if isinstance(b.drop_path, DropPath) else None for s in ours.blocks for b in s]
    ref_p = [b.stochastic_depth.p if b.use_res_connect else None for s in ref_stages for b in s]
    assert ours_p == pytest.approx(ref_p)
    # BatchNorm eps / momentum: PyTorch's for B0-B4, the released TF values for B5-B7 (as torchvision).
    bn = [(m.eps, m.momentum) for m in ours.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bn == [(m.eps, m.momentum) for m in ref.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bn[0] == ((1e-3, 0.01) if name in ("efficientnet_b5", "efficientnet_b6", "efficientnet_b7") else (1e-5, 0.1))


@pytest.mark.parametrize("name", NAMES)
def test_b1_to_b7_are_b0_scaled_by_the_released_table(name):
    width, depth, resolution, dropout = RELEASED[name]
    assert EFFICIENTNET_PARAMS[name] == (width, depth, resolution, dropout)
    options = model_options(name)
    assert (options["width_mult"], options["depth_mult"], options["drop_rate"]) == (width, depth, dropout)
    model = on_meta(lambda: create_model(name))
    assert model.stage_widths == scale_widths([s.out_chs for s in EFFICIENTNET_B0_STAGES], width)
    assert model.stage_depths == scale_depths([s.repeats for s in EFFICIENTNET_B0_STAGES], depth)
    assert model.default_cfg["input_size"] == (3, resolution, resolution)
    assert model.default_cfg["drop_rate"] == dropout and model.drop.p == dropout
    assert model.default_cfg["mean"] == (0.485, 0.456, 0.406) and model.default_cfg["std"] == (0.229, 0.224, 0.225)


def test_b0_is_table_1():
    model = on_meta(lambda: create_model("efficientnet_b0"))
    assert model.stage_widths == [16, 24, 40, 80, 112, 192, 320] and model.stage_depths == [1, 2, 2, 3, 3, 4, 1]
    assert [s[0].dw.conv.kernel_size[0] for s in model.blocks] == [3, 3, 5, 3, 5, 5, 3]
    assert [s[0].dw.conv.stride[0] for s in model.blocks] == [1, 2, 2, 2, 1, 2, 1]
    first, second = model.blocks[0][0], model.blocks[1][0]
    assert isinstance(first.expand, nn.Identity)  # MBConv1: no expansion
    assert second.expand.conv.out_channels == 16 * 6  # MBConv6
    assert isinstance(second.se, SEModule) and second.se.fc1.out_channels == 16 // 4  # SE 0.25 of the input
    assert type(second.dw.act) is nn.SiLU and not hasattr(second.project, "act")
    assert model.conv_head.conv.out_channels == 1280
    assert {type(m) for m in model.modules() if isinstance(m, nn.ReLU | nn.ReLU6 | nn.SiLU)} == {nn.SiLU}


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_b1"])
def test_reproduces_torchvision_outputs(name):
    assert_same_outputs(create_model(name), getattr(torchvision.models, name)(), "torchvision", (1, 3, 64, 64))


def test_b0_reproduces_timm_outputs():
    assert_same_outputs(create_model("efficientnet_b0"), timm.create_model("efficientnet_b0"), "timm", (1, 3, 64, 64))


def test_stages_and_feature_contract():
    model = create_model("efficientnet_b0", num_classes=10)
    assert [(f["num_chs"], f["reduction"], f["module"]) for f in model.feature_info] == [
        (16, 2, "blocks.0"),
        (24, 4, "blocks.1"),
        (40, 8, "blocks.2"),
        (112, 16, "blocks.4"),
        (320, 32, "blocks.6"),
    ]
    assert_feature_contract(model, sizes=(64, 96))


def test_one_training_step_reduces_the_loss():
    torch.manual_seed(0)
    assert_one_step_reduces_loss(create_model("efficientnet_b0", num_classes=10), input_size=(2, 3, 64, 64))


def test_reset_classifier_and_drop_path_option():
    model = create_model("efficientnet_b0", num_classes=4, drop_path_rate=0.0)
    assert not any(isinstance(m, DropPath) for m in model.modules())
    model.reset_classifier(7)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 7)
    assert model.default_cfg["num_classes"] == 7 and model.default_cfg["classifier"] == "classifier"
