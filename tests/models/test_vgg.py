"""VGG (Simonyan & Zisserman 2015): Table 1 parameter counts, torchvision parity, stages at each max-pool."""

import pytest
import torch
import torchvision
from torch import nn

from tests.models.contract import assert_feature_contract, assert_one_step_reduces_loss, assert_same_outputs
from vision_research.models import count_parameters, create_model, load_pretrained


def assert_same_logits_to_scale(ours: nn.Module, reference: nn.Module, input_size: tuple[int, ...]) -> None:
    """After ``assert_same_outputs`` (absolute 1e-4, loose for the small logits of random weights): 1e-5 of scale."""
    x = torch.randn(*input_size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, got = reference.eval()(x), ours.eval()(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


NAMES = ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]


def on_meta(build):
    """Build a model without allocating (or initialising) its ~140 M parameters: enough to count them."""
    with torch.device("meta"):
        return build()


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_and_names_equal_torchvision(name):
    ours = on_meta(lambda: create_model(name))
    reference = on_meta(getattr(torchvision.models, name))
    assert count_parameters(ours) == count_parameters(reference)
    assert list(ours.state_dict()) == list(reference.state_dict())  # torchvision checkpoints load by name


def test_vgg16_by_hand_138_357_544_and_conv_base_14_714_688():
    widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]  # config D, Table 1
    conv = sum(out * (inp * 9 + 1) for inp, out in zip([3, *widths[:-1]], widths, strict=True))
    fc = (512 * 7 * 7 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
    assert conv == 14_714_688  # Keras' VGG16(include_top=False), Michelucci ch. 8
    assert conv + fc == 138_357_544
    model = on_meta(lambda: create_model("vgg16"))
    assert count_parameters(model) == 138_357_544
    assert count_parameters(model.features) == 14_714_688


def test_weight_layer_counts_are_11_13_16_19():
    for name, depth in (("vgg11", 11), ("vgg13", 13), ("vgg16", 16), ("vgg19", 19)):
        model = on_meta(lambda name=name: create_model(name))
        assert sum(isinstance(m, nn.Conv2d | nn.Linear) for m in model.modules()) == depth, name
        assert all(m.kernel_size == (3, 3) for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.fixture(scope="module")
def torchvision_vgg11() -> nn.Module:
    """One torchvision VGG-11 for the tests that only read its weights (building one takes a second or two)."""
    torch.manual_seed(0)
    return torchvision.models.vgg11().eval()


@pytest.mark.parametrize("name", ["vgg11", "vgg11_bn"])
def test_torchvision_weights_give_torchvision_outputs(name, torchvision_vgg11):
    torch.manual_seed(0)
    model, reference = create_model(name), torchvision_vgg11 if name == "vgg11" else torchvision.models.vgg11_bn()
    assert_same_outputs(model, reference, "torchvision", (1, 3, 32, 32))
    assert_same_logits_to_scale(model, reference, (1, 3, 32, 32))


def test_stages_end_at_each_max_pool():
    model = create_model("vgg11_bn", num_classes=10)
    assert [f["num_chs"] for f in model.feature_info] == [64, 128, 256, 512, 512]
    assert [f["reduction"] for f in model.feature_info] == [2, 4, 8, 16, 32]
    assert all(isinstance(model.get_submodule(f["module"]), nn.MaxPool2d) for f in model.feature_info)
    assert_feature_contract(model, sizes=(32, 64))


def test_one_training_step_reduces_the_loss():
    torch.manual_seed(0)
    assert_one_step_reduces_loss(create_model("vgg11", num_classes=10), input_size=(2, 3, 32, 32))


def test_reset_classifier_and_other_class_count_from_torchvision(torchvision_vgg11):
    reference = torchvision_vgg11
    model = create_model("vgg11", num_classes=5, drop_rate=0.0)
    report = load_pretrained(model, reference.state_dict(), "torchvision")
    assert report.reinitialised == ["classifier.6.weight", "classifier.6.bias"]
    torch.testing.assert_close(model.classifier[3].weight, reference.classifier[3].weight)
    model.reset_classifier(3)
    assert model.get_classifier() is model.classifier[6] and model.default_cfg["num_classes"] == 3
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    assert model.classifier[2].p == 0.0


def test_unknown_config_is_rejected():
    from vision_research.models.vgg import VGG

    with pytest.raises(ValueError, match="config='C'"):
        VGG("C")
