"""dense_to_conv: same scores on the training size, one pass = the classifier slid over a larger image."""

import pytest
import torch
from torch import nn

from vision_research.models import create_model
from vision_research.models.convert import dense_to_conv


def test_dense_layers_become_convolutions_with_copied_weights():
    model = create_model("fashion_mnist_cnn").eval()
    fcn = dense_to_conv(model, (1, 28, 28))
    assert not any(isinstance(m, nn.Linear | nn.Flatten) for m in fcn.modules())
    first = next(
        m
        for m in fcn
        if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) and m.in_channels == 256 and m.out_channels == 128
    )
    assert first.weight.shape == (128, 256, 3, 3)  # the dense layer on the 256×3×3 map
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(fcn(x).flatten(1), model(x))


def test_one_pass_on_a_larger_image_equals_sliding_the_classifier():
    # Exact for unpadded (VALID) convolutions such as LeNet-5's; SAME padding makes window borders differ.
    model = create_model("lenet5_modern").eval()
    fcn = dense_to_conv(model, (1, 32, 32)).eval()
    image = torch.randn(1, 1, 40, 44)
    with torch.no_grad():
        scores = fcn(image)  # total stride 4: windows at rows 0, 4, 8 and columns 0, 4, 8, 12
        assert scores.shape == (1, 10, 3, 4)
        for row in range(3):
            for col in range(4):
                window = image[..., 4 * row : 4 * row + 32, 4 * col : 4 * col + 32]
                torch.testing.assert_close(scores[..., row, col], model(window), atol=1e-5, rtol=1e-4)


def test_non_sequential_models_are_refused():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.flatten, self.fc = nn.Conv2d(1, 1, 3, padding=1), nn.Flatten(), nn.Linear(16, 2)

        def forward(self, x):
            return self.fc(self.flatten(x + self.conv(x)))

    with pytest.raises(ValueError, match="does not apply its layers in sequence"):
        dense_to_conv(Residual(), (1, 4, 4))
