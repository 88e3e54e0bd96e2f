"""ResNet family: counts vs torchvision / timm, ported weights give the references' outputs, the paper's details
(option A, stride on the 1×1, pre-activation ordering, SE on the residual branch), scaling hooks, configs."""

from pathlib import Path

import pytest
import timm
import torch
import torchvision
from omegaconf import OmegaConf
from torch import nn

from tests.models.contract import assert_feature_contract, assert_one_step_reduces_loss, assert_same_outputs
from vision_research.models import count_parameters, create_model, load_pretrained, model_options
from vision_research.models.layers import SEModule
from vision_research.models.resnet import ResidualUnit, ZeroPadShortcut

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "model"
BOTTLENECK_DEPTHS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3), "resnet152": (3, 8, 36, 3)}


def meta_count(build) -> int:
    """Parameter count of a model built on the meta device (no memory, no initialisation cost)."""
    with torch.device("meta"):
        return count_parameters(build())


def cifar_params(n: int, widths=(16, 32, 64), stem: int = 16, num_classes: int = 10) -> int:
    """Hand count of §4.2's 6n+2 net with option A shortcuts: two 3×3 convs + two BNs per unit."""
    total, in_chs = 3 * stem * 9 + 2 * stem, stem
    for width in widths:
        for _ in range(n):
            total += in_chs * width * 9 + width * width * 9 + 4 * width
            in_chs = width
    return total + in_chs * num_classes + num_classes


def units(model: nn.Module) -> list[ResidualUnit]:
    return [m for m in model.modules() if isinstance(m, ResidualUnit)]


# Parameter counts -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "resnet152",
        "resnext50_32x4d",
        "resnext101_32x8d",
        "resnext101_64x4d",
    ],
)
def test_parameter_count_equals_torchvision(name):
    ours = meta_count(lambda: create_model(name))
    assert ours == meta_count(getattr(torchvision.models, name))
    if name in BOTTLENECK_DEPTHS:  # the paper's layout moves the stride, not a parameter
        assert meta_count(lambda: create_model(f"{name}_paper")) == ours


def test_figures_in_the_docstrings():
    expected = {
        "resnet18": 11_689_512,
        "resnet34": 21_797_672,
        "resnet50": 25_557_032,
        "resnet101": 44_549_160,
        "resnet152": 60_192_808,
        "resnext50_32x4d": 25_028_904,
        "resnext101_32x8d": 88_791_336,
        "resnext101_64x4d": 83_455_272,
        "seresnet50": 28_088_024,
    }
    assert {name: meta_count(lambda name=name: create_model(name)) for name in expected} == expected


@pytest.mark.parametrize(
    ("name", "options", "timm_name"),
    [
        ("seresnet50", {}, "seresnet50"),
        ("resnet18", {"se_ratio": 0.0625}, "seresnet18"),
        ("resnet34", {"se_ratio": 0.0625}, "seresnet34"),
        ("resnext50_32x4d", {"se_ratio": 0.0625}, "seresnext50_32x4d"),
        ("resnet18", {"preact": True}, "resnetv2_18"),
        ("resnet50", {"preact": True}, "resnetv2_50"),
        ("resnet101", {"preact": True}, "resnetv2_101"),
    ],
)
def test_se_and_preact_counts_equal_timm(name, options, timm_name):
    assert meta_count(lambda: create_model(name, **options)) == meta_count(lambda: timm.create_model(timm_name))


@pytest.mark.parametrize(
    ("name", "n", "expected"),
    [("resnet20", 3, 269_722), ("resnet32", 5, 464_154), ("resnet44", 7, 658_586), ("resnet56", 9, 853_018),
     ("resnet110", 18, 1_727_962)],
)  # fmt: skip
def test_cifar_resnet_counts(name, n, expected):
    model = create_model(name)
    assert cifar_params(n) == expected
    assert count_parameters(model) == expected
    assert model.stage_depths == (n, n, n) and model.stage_widths == (16, 32, 64)
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) + 1 == 6 * n + 2  # convs + fc = the depth


def test_se_adds_its_parameters_to_every_unit():
    plain, se = create_model("resnet50"), create_model("resnet50", se_ratio=1 / 16)
    se_units = units(se)
    assert len(se_units) == 16 and all(isinstance(u.se, SEModule) for u in se_units)
    assert all(u.se is None for u in units(plain))
    added = 0
    for depth, channels in zip((3, 4, 6, 3), (256, 512, 1024, 2048), strict=True):
        reduced = channels // 16
        added += depth * (2 * channels * reduced + reduced + channels)  # two 1×1 convs with bias
    assert count_parameters(se) - count_parameters(plain) == added
    assert [u.se.fc1.out_channels for u in se_units[:3]] == [16, 16, 16]
    cifar = create_model("resnet20", se_ratio=0.0625)  # timm's rounding: 16/16 = 1 → 8 reduced maps
    assert all(u.se.fc1.out_channels == 8 for u in units(cifar)) and len(units(cifar)) == 9


# Same weights, same outputs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnext50_32x4d"])
def test_torchvision_weights_give_torchvision_outputs(name):
    torch.manual_seed(0)
    reference, ours = getattr(torchvision.models, name)(), create_model(name)
    assert set(ours.state_dict()) == set(reference.state_dict())  # loads by name
    assert_same_outputs(ours, reference, "torchvision")


def test_timm_seresnet50_weights_give_timm_outputs():
    torch.manual_seed(0)
    reference, ours = timm.create_model("seresnet50"), create_model("seresnet50")
    assert set(ours.state_dict()) == set(reference.state_dict())
    assert_same_outputs(ours, reference, "timm")


def test_preact_equals_timm_resnetv2_50():
    """timm's pre-activation ResNet (BN variant) through ``remap_state_dict``: exact, BN-ReLU-conv throughout."""
    torch.manual_seed(0)
    assert_same_outputs(create_model("resnet50", preact=True), timm.create_model("resnetv2_50"), "timm", (1, 3, 64, 64))


def test_position_fallback_loads_unnamed_weights():
    torch.manual_seed(0)
    reference = torchvision.models.resnet18().eval()
    anonymous = {f"tensor{i:03d}": v for i, v in enumerate(reference.state_dict().values())}
    ours = create_model("resnet18").eval()
    report = load_pretrained(ours, anonymous, "torchvision")
    assert not report.missing and len(report.mapped) == len(anonymous)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))


# The papers' details ----------------------------------------------------------------------------------------------


def test_option_a_shortcut_has_no_parameters_and_zero_pads():
    model = create_model("resnet20")
    shortcuts = [u.downsample for u in units(model) if u.downsample is not None]
    assert len(shortcuts) == 2 and all(isinstance(s, ZeroPadShortcut) for s in shortcuts)
    assert sum(count_parameters(s) for s in shortcuts) == 0
    x = torch.randn(2, 16, 8, 8)
    out = model.layer2[0].downsample(x)
    assert out.shape == (2, 32, 4, 4)
    torch.testing.assert_close(out[:, :16], x[:, :, ::2, ::2], rtol=0, atol=0)
    assert torch.count_nonzero(out[:, 16:]) == 0
    # Option B instead projects with 1×1 conv + BN at both transitions: 16·32 + 2·32 + 32·64 + 2·64 parameters.
    option_b = create_model("resnet20", shortcut="B")
    assert count_parameters(option_b) - count_parameters(model) == 16 * 32 + 64 + 32 * 64 + 128
    assert count_parameters(create_model("resnet20", shortcut="C")) > count_parameters(option_b)


def test_plain_network_is_the_residual_network_without_its_sums():
    """§4.1: a plain net has the same convs (same parameters with option A) and no shortcut; each unit is
    ReLU(branch(x)) where the residual unit is ReLU(branch(x) + x)."""
    plain, residual = create_model("resnet20", shortcut="none"), create_model("resnet20")
    assert count_parameters(plain) == count_parameters(residual) == 269_722
    plain.load_state_dict(residual.state_dict())
    plain.eval(), residual.eval()
    unit_plain, unit_residual = plain.layer1[1], residual.layer1[1]
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        branch = unit_residual.bn2(unit_residual.conv2(unit_residual.relu(unit_residual.bn1(unit_residual.conv1(x)))))
        torch.testing.assert_close(unit_plain(x), torch.relu(branch))
        torch.testing.assert_close(unit_residual(x), torch.relu(branch + x))
        assert plain.layer2[0](torch.randn(2, 16, 8, 8)).shape == (2, 32, 4, 4)  # the shape change needs no shortcut
    assert all(u.downsample is None for u in units(plain))


@pytest.mark.parametrize("depth", [50, 101])
def test_paper_layout_strides_the_first_1x1(depth):
    v15, paper = create_model(f"resnet{depth}"), create_model(f"resnet{depth}_paper")
    for model, (stride_1x1, stride_3x3) in ((v15, (1, 2)), (paper, (2, 1))):
        for stage in ("layer2", "layer3", "layer4"):
            first, rest = getattr(model, stage)[0], list(getattr(model, stage))[1:]
            assert (first.conv1.stride[0], first.conv2.stride[0], first.conv3.stride[0]) == (stride_1x1, stride_3x3, 1)
            assert first.downsample[0].stride == (2, 2)
            assert all(u.conv1.stride == u.conv2.stride == (1, 1) for u in rest)
        assert all(u.conv1.stride == u.conv2.stride == (1, 1) for u in model.layer1)


def record_calls(unit: nn.Module, x: torch.Tensor) -> tuple[list[str], dict[str, torch.Tensor]]:
    order, inputs = [], {}

    def hook(module, args, name):
        order.append(name)
        inputs[name] = args[0].detach().clone()

    handles = [
        child.register_forward_pre_hook(lambda m, a, name=name: hook(m, a, name))
        for name, child in unit.named_children()
        if name.startswith(("conv", "bn", "downsample"))
    ]
    with torch.no_grad():
        unit(x)
    for handle in handles:
        handle.remove()
    return order, inputs


def test_preact_ordering_bn_relu_conv_and_final_norm():
    pre, post = create_model("resnet18", preact=True).eval(), create_model("resnet18").eval()
    x = torch.randn(1, 64, 8, 8)
    order, inputs = record_calls(pre.layer2[0], x)
    assert order.index("bn1") < order.index("conv1") < order.index("bn2") < order.index("conv2")
    assert pre.layer2[0].bn1.num_features == 64 and pre.layer2[0].bn2.num_features == 128  # BN on the inputs
    torch.testing.assert_close(inputs["conv1"], torch.relu(pre.layer2[0].bn1(x)))  # bn1 → ReLU → conv1
    torch.testing.assert_close(inputs["downsample"], inputs["conv1"])  # the projection sees the activated input
    assert len(pre.layer2[0].downsample) == 1  # a bare 1×1 conv, no BN
    assert pre.layer1[0].bn1 is None  # the stem's BN-ReLU is the first unit's pre-activation
    assert (pre.layer2[0](x) < 0).any()  # nothing after the addition

    order, inputs = record_calls(post.layer2[0], x)
    assert order.index("conv1") < order.index("bn1") < order.index("conv2") < order.index("bn2")
    torch.testing.assert_close(inputs["downsample"], x)
    assert (post.layer2[0](x) >= 0).all()  # ReLU after the addition

    assert isinstance(pre.norm.bn, nn.BatchNorm2d) and post.norm is None
    assert pre.feature_info[-1]["module"] == "norm"
    assert (pre.forward_features(torch.randn(1, 3, 64, 64))[-1] >= 0).all()  # the final BN-ReLU


def test_se_rescales_the_residual_branch_before_the_addition():
    unit = create_model("resnet18", se_ratio=0.0625).eval().layer1[1]  # identity shortcut
    with torch.no_grad():
        unit.se.fc2.weight.zero_()
        unit.se.fc2.bias.fill_(-1e4)  # gate ≈ 0: the residual branch vanishes
        x = torch.randn(1, 64, 8, 8)
        torch.testing.assert_close(unit(x), torch.relu(x))


# Contract, training, scaling hooks, regularisers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "sizes", "reductions"),
    [
        ("resnet18", {}, (64, 96), [4, 8, 16, 32]),
        ("resnet50", {}, (64, 96), [4, 8, 16, 32]),
        ("resnet18", {"preact": True}, (64, 80), [4, 8, 16, 32]),
        ("resnet20", {}, (32, 48), [1, 2, 4]),
    ],
)
def test_feature_contract(name, options, sizes, reductions):
    model = create_model(name, **options)
    assert [f["reduction"] for f in model.feature_info] == reductions
    assert model.feature_info[0]["module"] == "layer1"
    assert_feature_contract(model, sizes=sizes)


def test_default_cfg_and_reset_classifier():
    imagenet, cifar = create_model("resnet18"), create_model("resnet20")
    assert imagenet.default_cfg["input_size"] == (3, 224, 224) and imagenet.default_cfg["mean"] == (0.485, 0.456, 0.406)
    assert cifar.default_cfg["input_size"] == (3, 32, 32) and cifar.default_cfg["mean"] == (0.4914, 0.4822, 0.4465)
    assert imagenet.default_cfg["first_conv"] == "conv1" and imagenet.get_classifier() is imagenet.fc
    grey = create_model("resnet20", in_chans=1)
    assert len(grey.default_cfg["mean"]) == 1 and grey(torch.randn(1, 1, 32, 32)).shape == (1, 10)
    cifar.reset_classifier(5)
    assert cifar(torch.randn(1, 3, 32, 32)).shape == (1, 5) and cifar.default_cfg["num_classes"] == 5


def test_one_training_step_reduces_the_loss():
    torch.manual_seed(0)
    assert_one_step_reduces_loss(create_model("resnet18", num_classes=10), input_size=(2, 3, 64, 64))
    assert_one_step_reduces_loss(create_model("resnet20"), input_size=(4, 3, 32, 32))


def test_depth_and_width_multipliers_change_the_counts_as_declared():
    deeper = create_model("resnet20", depth_mult=1.5)  # ⌈3 · 1.5⌉ = 5 units: ResNet-32
    assert deeper.stage_depths == (5, 5, 5) and count_parameters(deeper) == 464_154
    assert create_model("resnet32", depth_mult=2.2).stage_depths == (11, 11, 11)  # 5 · 2.2 = 11.000000000000002
    wider = create_model("resnet20", width_mult=2.0)
    assert wider.stage_widths == (32, 64, 128) and wider.stem_width == 32
    assert count_parameters(wider) == cifar_params(3, widths=(32, 64, 128), stem=32)
    narrow = create_model("resnet20", width_mult=0.3)  # 4.8 → make_divisible → 8
    assert narrow.stage_widths == (8, 16, 24) and count_parameters(narrow) == cifar_params(3, (8, 16, 24), stem=8)

    scaled = create_model("resnet50", width_mult=0.5, depth_mult=2.0)
    assert scaled.stage_depths == (6, 8, 12, 6)
    assert [len(scaled.layer1), len(scaled.layer2), len(scaled.layer3), len(scaled.layer4)] == [6, 8, 12, 6]
    assert scaled.stage_widths == (32, 64, 128, 256) and scaled.stem_width == 32
    assert [f["num_chs"] for f in scaled.feature_info] == [128, 256, 512, 1024]
    assert (scaled.base_depths, scaled.base_widths) == ((3, 4, 6, 3), (64, 128, 256, 512))
    assert_feature_contract(scaled, sizes=(64,))


def test_drop_path_rises_linearly_and_eval_is_deterministic():
    model = create_model("resnet20", drop_path_rate=0.2, drop_rate=0.5)
    rates = [getattr(u.drop_path, "drop_prob", 0.0) for u in units(model)]
    assert rates == pytest.approx([0.2 * i / 8 for i in range(9)])
    assert model.head_drop.p == 0.5
    plain = create_model("resnet20")
    plain.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    model.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x))
    model.train()
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x))  # stochastic in training


def test_bad_options_are_errors():
    with pytest.raises(ValueError, match="shortcut"):
        create_model("resnet20", shortcut="D")
    with pytest.raises(ValueError, match="se_ratio"):
        create_model("resnet20", se_ratio=16)
    with pytest.raises(ValueError, match="width_mult"):
        create_model("resnet20", width_mult=0)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet20"])
def test_config_lists_the_builder_options_with_their_defaults(name):
    config = OmegaConf.to_container(OmegaConf.load(CONFIGS / f"{name}.yaml"))
    assert config.pop("name") == name and config.pop("pretrained") is None
    assert config.pop("pretrained_source") == "native"
    options = {k: v for k, v in model_options(name).items() if k not in ("num_classes", "in_chans")}
    assert config == options
