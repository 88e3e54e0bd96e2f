"""GoogLeNet (Szegedy et al. 2015): torchvision parity, the paper's stem and branches, aux heads, SE-Inception."""

import pytest
import torch
import torchvision
from torch import nn

from tests.models.contract import assert_feature_contract, assert_one_step_reduces_loss, assert_same_outputs
from vision_research.models import count_parameters, create_model, load_pretrained
from vision_research.models.layers import LocalResponseNorm, SEModule

# Table 1 of the paper: #1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj (typed here independently).
TABLE_1 = [
    (64, 96, 128, 16, 32, 32),
    (128, 128, 192, 32, 96, 64),
    (192, 96, 208, 16, 48, 64),
    (160, 112, 224, 24, 64, 64),
    (128, 128, 256, 24, 64, 64),
    (112, 144, 288, 32, 64, 64),
    (256, 160, 320, 32, 128, 128),
    (256, 160, 320, 32, 128, 128),
    (384, 192, 384, 48, 128, 128),
]
INCEPTION_NAMES = ["3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"]


def torchvision_googlenet(**kwargs) -> nn.Module:
    return torchvision.models.googlenet(weights=None, init_weights=False, **kwargs)


def conv(in_maps: int, out_maps: int, k: int) -> int:
    return out_maps * (in_maps * k * k + 1)


@pytest.mark.parametrize("aux_logits", [False, True])
def test_parameter_count_equals_torchvision(aux_logits):
    ours = count_parameters(create_model("googlenet", aux_logits=aux_logits))
    assert ours == count_parameters(torchvision_googlenet(aux_logits=aux_logits))
    assert ours == (13_004_888 if aux_logits else 6_624_904)


def test_paper_parameter_count_is_table_one_with_biases():
    total = conv(3, 64, 7) + conv(64, 64, 1) + conv(64, 192, 3)
    in_maps = 192
    for ch1, red3, ch3, red5, ch5, proj in TABLE_1:
        total += conv(in_maps, ch1, 1) + conv(in_maps, red3, 1) + conv(red3, ch3, 3)
        total += conv(in_maps, red5, 1) + conv(red5, ch5, 5) + conv(in_maps, proj, 1)
        in_maps = ch1 + ch3 + ch5 + proj
    total += 1000 * (1024 + 1)
    assert total == 6_998_552
    assert count_parameters(create_model("googlenet_paper", aux_logits=False)) == total
    aux = conv(512, 128, 1) + conv(528, 128, 1) + 2 * (1024 * (2048 + 1) + 1000 * (1024 + 1))
    assert count_parameters(create_model("googlenet_paper")) == total + aux == 13_378_280


@pytest.mark.parametrize(("aux_logits", "transform_input"), [(True, False), (False, False), (True, True)])
def test_torchvision_weights_give_torchvision_outputs(aux_logits, transform_input):
    reference = torchvision_googlenet(aux_logits=aux_logits, transform_input=transform_input)
    ours = create_model("googlenet", aux_logits=aux_logits, transform_input=transform_input)
    # atol 1e-6: the logits are small (~0.2) and identical; the default 1e-4 would pass a BN eps of 1e-5.
    assert_same_outputs(ours, reference, "torchvision", input_size=(1, 3, 64, 64), atol=1e-6)


def test_torchvision_builds_without_weights_with_transform_input_false():
    assert torchvision_googlenet().transform_input is False
    assert create_model("googlenet").transform_input is False


def test_torchvision_weights_for_another_class_count_reinitialise_all_three_classifiers():
    reference = torchvision_googlenet(aux_logits=True)
    ours = create_model("googlenet", num_classes=10)
    report = load_pretrained(ours, reference.state_dict(), "torchvision")
    aux_heads = {f"aux{i}.fc2.{p}" for i in (1, 2) for p in ("weight", "bias")}
    assert {"fc.weight", "fc.bias"} <= set(report.reinitialised)
    assert set(report.missing) | set(report.reinitialised) == aux_heads | {"fc.weight", "fc.bias"}
    assert ours.default_cfg["aux_classifiers"] == ("aux1.fc2", "aux2.fc2")
    torch.testing.assert_close(ours.aux1.fc1.weight, reference.aux1.fc1.weight)
    torch.testing.assert_close(ours.inception5b.branch3[1].conv.weight, reference.inception5b.branch3[1].conv.weight)


def test_paper_stem_has_two_lrn_no_batch_norm_and_real_5x5_branches():
    model = create_model("googlenet_paper")
    lrns = [name for name, m in model.named_modules() if isinstance(m, LocalResponseNorm)]
    assert lrns == ["lrn1", "lrn2"]
    assert (model.lrn1.size, model.lrn1.alpha, model.lrn1.beta, model.lrn1.k) == (5, 1e-4, 0.75, 2.0)
    # Fig. 3's order: conv 7×7/2 → max-pool → LRN → conv 1×1 → conv 3×3 → LRN → max-pool.
    order = [name for name, _ in model.named_children()][:7]
    assert order == ["conv1", "maxpool1", "lrn1", "conv2", "conv3", "lrn2", "maxpool2"]
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Conv2d))
    for name in INCEPTION_NAMES:
        assert getattr(model, f"inception{name}").branch3[1].conv.kernel_size == (5, 5)
    assert model.maxpool4.kernel_size == 3 and model.dropout.p == 0.4


def test_googlenet_is_torchvisions_layout_bn_and_3x3_in_the_5x5_branch():
    model = create_model("googlenet")
    assert not any(isinstance(m, LocalResponseNorm) for m in model.modules())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == len(norms) and all(m.bias is None for m in convs) and {m.eps for m in norms} == {1e-3}
    for name in INCEPTION_NAMES:
        assert getattr(model, f"inception{name}").branch3[1].conv.kernel_size == (3, 3)
    assert model.maxpool4.kernel_size == 2 and model.dropout.p == 0.2


@pytest.mark.parametrize("name", ["googlenet", "googlenet_paper"])
def test_224_gives_7x7_after_five_stride_2_steps_and_4x4_aux_pools(name):
    with torch.device("meta"):  # shapes only: no arithmetic
        model = create_model(name)
    strided, shapes = [], {}
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.MaxPool2d) and module.stride in (2, (2, 2)):
            strided.append(module_name)
    for key in ("inception5b", "aux1.conv", "aux2.conv"):
        model.get_submodule(key).register_forward_hook(lambda m, i, o, key=key: shapes.__setitem__(key, i[0].shape))
    model.train()
    model(torch.empty(1, 3, 224, 224, device="meta"))
    assert strided == ["conv1.conv", "maxpool1", "maxpool2", "maxpool3", "maxpool4"]
    features = model.forward_features(torch.empty(1, 3, 224, 224, device="meta"))
    assert [tuple(f.shape[1:]) for f in features] == [(192, 56, 56), (480, 28, 28), (832, 14, 14), (1024, 7, 7)]
    assert shapes["aux1.conv"] == (1, 512, 4, 4) and shapes["aux2.conv"] == (1, 528, 4, 4)


def test_aux_outputs_only_in_training_mode():
    model = create_model("googlenet", num_classes=7)
    x = torch.randn(2, 3, 64, 64)
    model.train()
    out = model(x)
    assert isinstance(out, tuple) and len(out) == 3 and all(o.shape == (2, 7) for o in out)
    features = model.forward_features(x)
    assert isinstance(features, list) and len(features) == 4 and all(f.dim() == 4 for f in features)
    model.eval()
    with torch.no_grad():
        logits = model(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 7)
    no_aux = create_model("googlenet", num_classes=7, aux_logits=False).train()
    assert isinstance(no_aux(x), torch.Tensor) and no_aux.aux1 is None and no_aux.aux2 is None


def test_aux_heads_get_gradients_from_their_losses():
    model = create_model("googlenet_paper", num_classes=5).train()
    _, aux1, aux2 = model(torch.randn(2, 3, 64, 64))
    (aux1.sum() + aux2.sum()).backward()
    assert model.aux1.fc2.weight.grad is not None and model.aux2.conv.conv.weight.grad is not None
    assert model.fc.weight.grad is None and model.inception4a.branch1.conv.weight.grad.abs().sum() > 0


def test_reset_classifier_resets_the_aux_heads_too():
    model = create_model("googlenet")
    model.reset_classifier(4)
    assert model.fc.out_features == model.aux1.fc2.out_features == model.aux2.fc2.out_features == 4
    assert model.num_classes == model.default_cfg["num_classes"] == 4
    assert model.get_classifier() is model.fc
    model.train()
    assert all(o.shape == (1, 4) for o in model(torch.randn(1, 3, 64, 64)))


@pytest.mark.parametrize("name", ["googlenet", "googlenet_paper"])
def test_feature_contract(name):
    model = create_model(name)
    assert [(f["num_chs"], f["reduction"]) for f in model.feature_info] == [(192, 4), (480, 8), (832, 16), (1024, 32)]
    assert_feature_contract(model, sizes=(64, 96))


@pytest.mark.parametrize("name", ["googlenet", "googlenet_paper"])
def test_one_training_step_reduces_the_loss(name):
    torch.manual_seed(0)
    assert_one_step_reduces_loss(create_model(name, num_classes=10), input_size=(2, 3, 64, 64))


def test_se_ratio_adds_an_se_block_to_every_inception_module():
    plain = create_model("googlenet", aux_logits=False)
    model = create_model("googlenet", aux_logits=False, se_ratio=1 / 16)
    se_blocks = {name: m for name, m in model.named_modules() if isinstance(m, SEModule)}
    assert sorted(se_blocks) == sorted(f"inception{name}.se" for name in INCEPTION_NAMES)
    assert not any(isinstance(m, SEModule) for m in plain.modules())
    # SE on C maps with r = 16: FC C → C/16 and FC C/16 → C, with biases (Hu et al. 2018, Fig. 2).
    widths = [ch1 + ch3 + ch5 + proj for ch1, _, ch3, _, ch5, proj in TABLE_1]
    added = sum(2 * c * (c // 16) + c // 16 + c for c in widths)
    assert count_parameters(model) - count_parameters(plain) == added
    seen = {}
    model.inception4e.se.register_forward_hook(lambda m, i, o: seen.update(x=i[0], y=o))
    model.inception4e.register_forward_hook(lambda m, i, o: seen.update(out=o))
    model.eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert seen["x"].shape[1] == 832 and seen["out"] is seen["y"] and not torch.equal(seen["x"], seen["y"])


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="branch5_kernel"):
        create_model("googlenet", branch5_kernel=7)
    with pytest.raises(ValueError, match="se_ratio"):
        create_model("googlenet", se_ratio=16)
    with pytest.raises(ValueError, match="transform_input"):
        create_model("googlenet", in_chans=1, transform_input=True)
