"""DenseNet-BC (Huang et al. 2017): torchvision parity, Table 1's counts, dense connectivity and the stages."""

import re

import pytest
import torch
import torchvision
from torch import nn

from tests.models.contract import assert_feature_contract, assert_one_step_reduces_loss, assert_same_outputs
from vision_research.models import count_parameters, create_model, load_pretrained
from vision_research.models.densenet import DenseNet

COUNTS = {"densenet121": 7_978_856, "densenet169": 14_149_480, "densenet201": 20_013_928, "densenet161": 28_681_000}


@pytest.mark.parametrize("name", list(COUNTS))
def test_parameter_count_equals_torchvision(name):
    reference = getattr(torchvision.models, name)(weights=None)
    assert count_parameters(create_model(name)) == count_parameters(reference) == COUNTS[name]


def test_torchvision_weights_give_torchvision_outputs():
    reference = torchvision.models.densenet121(weights=None)
    assert_same_outputs(create_model("densenet121"), reference, "torchvision", input_size=(1, 3, 64, 64), atol=1e-6)


def test_older_torchvision_checkpoint_keys_are_renamed():
    reference = torchvision.models.densenet121(weights=None)
    # Older files spell "denselayer1.norm1.weight" as "denselayer1.norm.1.weight".
    legacy = {
        re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", k): v for k, v in reference.state_dict().items()
    }
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    model = create_model("densenet121")
    report = load_pretrained(model, legacy, "torchvision")
    assert not report.missing and not report.ignored
    loaded = model.state_dict()
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)


def test_dense_connectivity_growth_and_compression():
    model = create_model("densenet121")
    block = model.features.denseblock2
    layers = list(block.children())
    # Layer ℓ sees the block input (128 maps after transition 1) and the k = 32 maps of each earlier layer.
    assert [layer.norm1.num_features for layer in layers] == [128 + 32 * i for i in range(12)]
    assert all(layer.conv1.out_channels == 4 * 32 and layer.conv2.out_channels == 32 for layer in layers)
    # H_ℓ is BN → ReLU → conv (pre-activation), twice.
    assert [type(m) for m in layers[0].children()] == [nn.BatchNorm2d, nn.ReLU, nn.Conv2d] * 2
    transition = model.features.transition2
    assert [type(m) for m in transition] == [nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.AvgPool2d]
    assert (transition.conv.in_channels, transition.conv.out_channels) == (512, 256)  # θ = 0.5
    # A block's output is its input followed by each layer's new maps.
    x = torch.randn(1, 128, 8, 8)
    block.eval()
    with torch.no_grad():
        out = block(x)
    assert out.shape == (1, 512, 8, 8) and torch.equal(out[:, :128], x)
    with torch.no_grad():
        first = layers[0](x)
    torch.testing.assert_close(out[:, 128:160], first)


def test_plain_and_uncompressed_variants_hand_count():
    """bn_size=0 (no bottleneck) and compression=1.0 on a tiny net: k = 4, blocks (2, 3), stem 8, 3 classes."""
    model = DenseNet(num_classes=3, growth_rate=4, block_config=(2, 3), num_init_features=8, bn_size=0, compression=1)
    bn = 2  # per norm channel
    stem = 3 * 8 * 49 + bn * 8
    block1 = sum(bn * c + c * 4 * 9 for c in (8, 12))  # 16 maps out
    transition = bn * 16 + 16 * 16
    block2 = sum(bn * c + c * 4 * 9 for c in (16, 20, 24))  # 28 maps out
    head = bn * 28 + 3 * 29
    assert count_parameters(model) == stem + block1 + transition + block2 + head
    assert [(f["num_chs"], f["reduction"]) for f in model.feature_info] == [(16, 4), (28, 8)]


def test_feature_contract_block_outputs_and_norm5_last():
    model = create_model("densenet121")
    assert [(f["num_chs"], f["reduction"]) for f in model.feature_info] == [(256, 4), (512, 8), (1024, 16), (1024, 32)]
    assert_feature_contract(model, sizes=(64, 96))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        torch.testing.assert_close(features[-1], model.features(x))  # after norm5
        torch.testing.assert_close(features[0], model.features[:5](x))  # dense block 1, before transition 1
        torch.testing.assert_close(model.forward_head(features), model(x))


def test_one_training_step_reduces_the_loss():
    torch.manual_seed(0)
    assert_one_step_reduces_loss(create_model("densenet121", num_classes=10), input_size=(2, 3, 64, 64))


def test_drop_rate_drops_new_maps_in_training_only():
    model = DenseNet(num_classes=3, growth_rate=4, block_config=(2, 2), num_init_features=8, drop_rate=0.5)
    x = torch.randn(2, 3, 32, 32)
    model.train()
    torch.manual_seed(0)
    a = model(x)
    torch.manual_seed(1)
    assert not torch.allclose(a, model(x))
    model.eval()
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


def test_reset_classifier():
    model = create_model("densenet161")
    model.reset_classifier(5)
    assert model.classifier.in_features == 2208 and model.classifier.out_features == 5
    assert model.get_classifier() is model.classifier and model.default_cfg["num_classes"] == 5


def test_timm_weights_give_timm_outputs():
    import timm

    reference = timm.create_model("densenet121", pretrained=False)
    assert_same_outputs(create_model("densenet121"), reference, "timm", input_size=(1, 3, 64, 64), atol=1e-6)
