"""Géron's Fashion-MNIST CNN: hand-counted parameters, SAME padding, stage maps."""

import pytest
import torch

from vision_research.models import count_parameters, create_model


def test_parameter_count_by_hand():
    convs = [(1, 64, 7), (64, 128, 3), (128, 128, 3), (128, 256, 3), (256, 256, 3)]
    conv_total = sum(out * (inp * k * k + 1) for inp, out, k in convs)
    flat = 256 * 3 * 3  # 28 → 14 → 7 → 3
    dense_total = (flat * 128 + 128) + (128 * 64 + 64) + (64 * 10 + 10)
    assert conv_total + dense_total == 1_413_834
    assert count_parameters(create_model("fashion_mnist_cnn")) == 1_413_834


def test_stages_follow_feature_info_and_same_padding():
    model = create_model("fashion_mnist_cnn")
    features = model.forward_features(torch.randn(2, 1, 28, 28))
    assert [tuple(f.shape[1:]) for f in features] == [(64, 14, 14), (128, 7, 7), (256, 3, 3)]
    assert [f["num_chs"] for f in model.feature_info] == [64, 128, 256]
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_other_input_size_needs_the_image_size_option():
    model = create_model("fashion_mnist_cnn", image_size=32)
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 10)
    with pytest.raises(ValueError, match="image_size"):
        create_model("fashion_mnist_cnn")(torch.randn(1, 1, 32, 32))


def test_dropout_only_in_training():
    model = create_model("fashion_mnist_cnn").eval()
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(model(x), model(x))
