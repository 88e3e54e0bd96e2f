"""Michelucci's models (Advanced Applied Deep Learning, 2019): Keras' parameter counts, shapes, the stage contract
and the VGG-16 conv base shared with ``vgg16``."""

import pytest
import torch

from tests.models.contract import assert_feature_contract, assert_one_step_reduces_loss
from vision_research.models import count_parameters, create_model, load_pretrained

# name: (Keras' count as the book prints it, the book's input C, H = W, its class count)
BOOK = {
    "michelucci_mnist_cnn": (592_074, 1, 28, 10),
    "michelucci_dogs_cats_cnn": (19_024_513, 3, 150, 1),
    "michelucci_dogs_cats_vgg16": (15_242_050, 3, 150, 2),
    "michelucci_sliding_window_cnn": (1_199_882, 1, 28, 10),
    "michelucci_histology_v1": (85_512, 3, 150, 8),
    "michelucci_histology_v2": (5_447_912, 3, 150, 8),
    "michelucci_histology_v3": (639_240, 3, 150, 8),
    "michelucci_histology_vgg16": (23_112_520, 3, 150, 8),
}
SAME_PADDED = ["michelucci_histology_v2", "michelucci_histology_v3", "michelucci_dogs_cats_vgg16"]
VGG16_CONV_BASE = 14_714_688  # Keras' VGG16(include_top=False)


@pytest.fixture(scope="module")
def models():
    return {name: create_model(name).eval() for name in BOOK}


def test_hand_sums_of_the_keras_counts():
    def conv(i, o, k):
        return o * (i * k * k + 1)

    def fc(i, o):
        return o * (i + 1)

    assert conv(1, 32, 5) + fc(32 * 12 * 12, 128) + fc(128, 10) == 592_074
    assert conv(3, 16, 3) + conv(16, 64, 3) + conv(64, 128, 3) + fc(128 * 17 * 17, 512) + fc(512, 1) == 19_024_513
    assert VGG16_CONV_BASE + fc(512, 1024) + fc(1024, 2) == 15_242_050
    assert conv(1, 32, 3) + conv(32, 64, 3) + fc(9216, 128) + fc(128, 10) == 1_199_882
    assert conv(3, 32, 3) + conv(32, 64, 3) + fc(1024, 64) + fc(64, 8) == 85_512
    v2_convs = conv(3, 128, 5) + conv(128, 64, 3) + conv(64, 64, 3)
    assert v2_convs + fc(20736, 256) + fc(256, 64) + fc(64, 32) + fc(32, 8) == 5_447_912
    widths = [3, 16, 16, 16, 32, 32, 32, 64, 64, 64, 128, 128, 256]
    assert sum(conv(i, o, 3) for i, o in zip(widths, widths[1:], strict=False)) + fc(256, 8) == 639_240
    assert VGG16_CONV_BASE + fc(512 * 4 * 4, 1024) + fc(1024, 8) == 23_112_520


@pytest.mark.parametrize("name", BOOK)
def test_parameter_count_equals_keras(models, name):
    assert sum(p.numel() for p in models[name].parameters()) == BOOK[name][0]


@pytest.mark.parametrize("name", BOOK)
def test_forward_shape_at_the_books_input_size(models, name):
    _, in_chans, size, num_classes = BOOK[name]
    model = models[name]
    assert model.default_cfg["input_size"] == (in_chans, size, size)
    assert model.num_classes == num_classes
    x = torch.randn(2, in_chans, size, size)
    with torch.no_grad():
        features = model.forward_features(x)
        out = model(x)
        assert torch.equal(model.forward_head(features), out)  # eval: dropout off
    assert out.shape == (2, num_classes)


@pytest.mark.parametrize("name", BOOK)
def test_feature_info_matches_the_stage_maps(models, name):
    """Channels exact; reductions exact: an input larger by R (the last stage's reduction) grows stage i's map by
    R / reduction_i pixels, whatever the padding (VALID borders shift the sizes, not their growth)."""
    _, in_chans, size, _ = BOOK[name]
    model = models[name]
    info = model.feature_info
    assert [i["reduction"] for i in info] == sorted(i["reduction"] for i in info)
    growth = info[-1]["reduction"]
    with torch.no_grad():
        small = model.forward_features(torch.randn(1, in_chans, size, size))
        large = model.forward_features(torch.randn(1, in_chans, size + growth, size + growth))
    assert len(small) == len(large) == len(info)
    for fmap, bigger, stage in zip(small, large, info, strict=True):
        assert fmap.shape[1] == stage["num_chs"], stage
        assert bigger.shape[-1] - fmap.shape[-1] == growth // stage["reduction"], stage
        assert model.get_submodule(stage["module"]) is not None


@pytest.mark.parametrize("name", SAME_PADDED)
def test_same_padded_models_pass_the_shared_contract(models, name):
    assert_feature_contract(models[name], sizes=(96, 150))


def test_histology_v1_convolutions_have_stride_3(models):
    convs = [m for m in models["michelucci_histology_v1"].features if isinstance(m, torch.nn.Conv2d)]
    assert [(c.kernel_size, c.stride) for c in convs] == [((3, 3), (3, 3))] * 2
    maps = models["michelucci_histology_v1"].forward_features(torch.randn(1, 3, 150, 150))
    assert [tuple(m.shape[1:]) for m in maps] == [(32, 25, 25), (64, 4, 4)]  # Keras: 50 → 25, 8 → 4


@pytest.mark.parametrize("name", ["michelucci_mnist_cnn", "michelucci_histology_v3", "michelucci_histology_vgg16"])
def test_reset_classifier_changes_the_output_size(name):
    _, in_chans, size, _ = BOOK[name]
    model = create_model(name).eval()
    model.reset_classifier(5)
    assert model.num_classes == model.default_cfg["num_classes"] == 5
    assert model.get_classifier() is model.head and model.head[-1].out_features == 5
    with torch.no_grad():
        assert model(torch.randn(1, in_chans, size, size)).shape == (1, 5)


def test_options_stay_options():
    model = create_model("michelucci_mnist_cnn", num_classes=3, in_chans=3, image_size=32)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    assert model.default_cfg["input_size"] == (3, 32, 32)
    with pytest.raises(ValueError, match="image_size"):
        create_model("michelucci_mnist_cnn")(torch.randn(1, 1, 32, 32))
    # the global-pool heads take any size
    assert create_model("michelucci_histology_v3")(torch.randn(1, 3, 100, 100)).shape == (1, 8)


def test_one_training_step_reduces_the_loss():
    assert_one_step_reduces_loss(create_model("michelucci_mnist_cnn"), (4, 1, 28, 28), num_classes=10)


def test_histology_vgg16_base_loads_from_our_vgg16():
    vgg16 = create_model("vgg16")
    model = create_model("michelucci_histology_vgg16")
    report = load_pretrained(model, vgg16.state_dict())
    base = {k for k in model.state_dict() if k.startswith("features.")}
    assert set(report.mapped) == base and len(base) == 26  # 13 convs, weight and bias
    assert set(report.missing) == {k for k in model.state_dict() if not k.startswith("features.")}
    assert all(k.startswith("classifier.") for k in report.ignored)
    for key in base:
        assert torch.equal(model.state_dict()[key], vgg16.state_dict()[key])
    assert count_parameters(model.features) == VGG16_CONV_BASE == count_parameters(vgg16.features)
    # the same base sits in dogs_cats_vgg16; a torchvision-layout file maps by name through remap_state_dict
    dogs = create_model("michelucci_dogs_cats_vgg16")
    report = load_pretrained(dogs, vgg16.state_dict(), source="torchvision")
    assert len(report.mapped) == 26 and not report.reinitialised
    torch.testing.assert_close(dogs.features[28].weight, vgg16.features[28].weight)


def test_the_whole_dense_head_is_what_a_frozen_base_leaves_to_train():
    from vision_research.optim import backbone_layers, backbone_stages

    model = create_model("michelucci_histology_vgg16")
    head = {name for name, _ in backbone_layers(model, backbone_stages(model))["head"]}
    assert head == {f"head.{name}" for name, _ in model.head.named_parameters()}
    assert len(head) == 4  # the 1,024-unit hidden layer and the output layer, weights and biases
