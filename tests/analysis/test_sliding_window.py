"""Sliding windows vs one convolutional pass: same scores for a VALID CNN, ~5.5× fewer FLOPs, and a digit found."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
from torchvision.ops import box_iou

from vision_research.analysis.sliding_window import (
    convolutional_scores,
    localize,
    sliding_window_scores,
    window_crops,
)
from vision_research.models import create_model
from vision_research.models.convert import dense_to_conv

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models (conftest.py)

WINDOW, STRIDE = 32, 4  # LeNet-5's input and total stride


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.fixture(scope="module")
def lenet():
    torch.manual_seed(0)
    return create_model("lenet5_modern").eval()  # random weights: the equality needs no training


def test_batched_crops_equal_a_naive_loop_over_windows(lenet):
    image = torch.randn(1, 40, 44)
    scores = sliding_window_scores(lenet, image, WINDOW, STRIDE)
    assert scores.shape == (10, 3, 4)
    with torch.no_grad():
        for row in range(3):
            for col in range(4):
                crop = image[:, STRIDE * row : STRIDE * row + WINDOW, STRIDE * col : STRIDE * col + WINDOW]
                torch.testing.assert_close(scores[:, row, col], lenet(crop[None])[0])
    assert window_crops(image, WINDOW, STRIDE).shape == (3, 4, 1, WINDOW, WINDOW)
    with pytest.raises(ValueError, match="at least 32×32"):
        window_crops(torch.randn(1, 20, 40), WINDOW, STRIDE)


def test_one_pass_equals_sliding_windows_with_far_fewer_flops(lenet):
    image = torch.rand(1, 140, 140)  # the book's canvas: 28 × 28 = 784 windows
    sliding = sliding_window_scores(lenet, image, WINDOW, STRIDE)
    one_pass = convolutional_scores(lenet, image)  # window from default_cfg: 32
    assert sliding.shape == one_pass.shape == (10, 28, 28)
    torch.testing.assert_close(one_pass, sliding, atol=1e-5, rtol=1e-4)

    converted = dense_to_conv(lenet, (1, WINDOW, WINDOW))
    sliding_flops = _flops(lambda: sliding_window_scores(lenet, image, WINDOW, STRIDE))
    pass_flops = _flops(lambda: converted(image[None]))
    # Measured: 653,103,360 vs 117,596,160 FLOPs (5.55×); 5.40× counting dense_to_conv's own check passes.
    assert sliding_flops / pass_flops > 5.0
    assert sliding_flops / _flops(lambda: convolutional_scores(lenet, image)) > 5.0


def test_same_padding_breaks_the_equality_at_window_borders():
    torch.manual_seed(0)
    model = create_model("fashion_mnist_cnn").eval()  # SAME padding, 28×28 input, total stride 8
    image = torch.rand(1, 44, 44)
    sliding = sliding_window_scores(model, image, 28, 8)
    one_pass = convolutional_scores(model, image, 28)
    assert sliding.shape == one_pass.shape == (10, 3, 3)
    assert not torch.allclose(one_pass, sliding, atol=1e-3)


def test_localize_picks_the_most_probable_window():
    scores = torch.zeros(3, 4, 5)
    scores[2, 1, 3] = 5.0
    detection = localize(scores, window=32, stride=4)
    assert detection.box.tolist() == [12, 4, 44, 36] and detection.label == 2
    assert detection.score == pytest.approx(torch.tensor([0.0, 0.0, 5.0]).softmax(0)[2].item())


@pytest.fixture(scope="module")
def mnist_lenet():
    """LeNet-5 (modern) trained briefly on 2,000 of the 5,000 embedded MNIST digits, padded to 32×32."""
    from vision_research.data.mnist import load_embedded_mnist

    images, labels = load_embedded_mnist()  # sorted by class: every 5th digit is held out
    digits = F.pad(torch.from_numpy(images).float().div(255)[:, None], (2, 2, 2, 2))
    targets = torch.from_numpy(labels)
    held_out = torch.arange(len(digits)) % 5 == 0
    x, y = digits[~held_out][::2], targets[~held_out][::2]
    torch.manual_seed(0)
    model = create_model("lenet5_modern")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(2):
        for batch in torch.randperm(len(x)).split(32):
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(digits[held_out]).argmax(1) == targets[held_out]).float().mean()
    return model, images[held_out.numpy()], float(accuracy)


def test_the_best_window_lands_on_a_real_digit_pasted_into_a_black_canvas(mnist_lenet):
    model, digits, accuracy = mnist_lenet
    assert accuracy > 0.85  # ~0.92 measured: the classifier is trained
    digit_box = torch.tensor([[56.0, 56.0, 84.0, 84.0]])  # the book's 56-pixel border: 140 × 140 (Michelucci ch. 6)
    for digit in digits[::100]:  # 10 held-out digits, one of each class
        canvas = torch.zeros(1, 140, 140)
        canvas[0, 56:84, 56:84] = torch.from_numpy(digit).float() / 255
        detection = localize(convolutional_scores(model, canvas), WINDOW, STRIDE)
        x0, y0, x1, y1 = detection.box.tolist()
        assert box_iou(detection.box[None].float(), digit_box).item() > 0.3
        assert x0 <= 70 < x1 and y0 <= 70 < y1  # the window holds the digit's centre
