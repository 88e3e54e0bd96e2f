"""model_summary: Géron's exercise 2 by hand (ch. 14) and FLOPs of a conv layer by the formula."""

import pytest
from timm.layers import create_conv2d
from torch import nn

from vision_research.analysis import model_summary
from vision_research.models import create_model


def exercise_two_net() -> nn.Sequential:
    """Three 3×3 stride-2 SAME convolutions with 100, 200 and 400 maps, on RGB."""
    chans = [3, 100, 200, 400]
    return nn.Sequential(
        *[
            create_conv2d(a, b, 3, stride=2, padding="same", bias=True)
            for a, b in zip(chans[:-1], chans[1:], strict=True)
        ]
    )


def test_exercise_two_parameters_shapes_and_memory():
    summary = model_summary(exercise_two_net(), (3, 200, 300))
    assert [layer.params for layer in summary.layers] == [2_800, 180_200, 720_400]
    assert summary.total_params == 903_400
    assert [layer.output_shape for layer in summary.layers] == [(100, 100, 150), (200, 50, 75), (400, 25, 38)]
    # inference: 3.6 MB of weights + the 6 MB input of layer 2 + its 3 MB output ≈ 12.6 MB
    assert summary.inference_bytes() == pytest.approx((903_400 + 1_500_000 + 750_000) * 4)
    assert summary.inference_bytes() / 1e6 == pytest.approx(12.6, abs=0.05)
    assert summary.inference_bytes("fp16") == summary.inference_bytes() // 2
    # training on 50 images: 526 MB of activations + 36 MB of inputs + 3.6 MB of weights ≈ 566 MB
    assert summary.training_bytes(50) / 1e6 == pytest.approx(566, abs=1)


def test_conv_flops_follow_the_formula():
    summary = model_summary(exercise_two_net(), (3, 200, 300))
    first = summary.layers[0]
    macs = 100 * 150 * 100 * (3 * 3 * 3)  # output positions × maps × kernel volume
    assert first.flops == 2 * macs
    assert summary.total_flops == sum(layer.flops for layer in summary.layers)


def test_in_place_activations_store_nothing_and_default_input_size():
    summary = model_summary(create_model("fashion_mnist_cnn"))
    relus = [layer for layer in summary.layers if layer.kind == "ReLU"]
    assert relus and all(layer.output_numel == 0 for layer in relus)
    assert summary.total_params == 1_413_834
    assert "total: 1,413,834 parameters" in str(summary)
