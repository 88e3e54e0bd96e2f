"""Sliding-window detection and the FCN "slide once" trick (Géron ch. 14; Michelucci ch. 6; Sermanet et al. 2014,
OverFeat §3.5).

A classifier trained on ``window``×``window`` images finds an object in a larger image by scoring every crop:
:func:`sliding_window_scores` cuts all crops at once (``Tensor.unfold``) and classifies them as one batch.
:func:`convolutional_scores` gets the same grid of scores from one pass of the classifier with its dense
layers turned into convolutions (``dense_to_conv``, Long et al. 2015 §3.1): its output pixel (i, j) sees
exactly the window at (i·s, j·s), s being the network's total stride, and the windows' overlapping parts are
computed once instead of once per window.

The two agree to float tolerance when the sliding stride is the network's total stride and the network pads
nothing (VALID): with SAME padding a window's border pixels would see zeros in the sliding path but image
pixels in the one-pass path. For ``lenet5_modern`` (32×32 input, total stride 4) on the book's 140×140 canvas
(28×28 = 784 windows), FlopCounterMode counts 653.1 MFLOPs for the batch of crops and 117.6 MFLOPs for the one
pass: 5.55× fewer (5.40× counting ``dense_to_conv``'s own check on two 32×32 inputs;
``tests/analysis/test_sliding_window.py``). The saving is in the early layers, whose maps overlap between windows;
C5 and the dense layers still run once per window position, which bounds the ratio at this stride.

:func:`localize` is Michelucci's ``localize_digit`` (ch. 6): the window whose class probability is
the highest, with that class. A LeNet-5 trained briefly on centred MNIST digits puts that window on a digit
pasted into a black 140×140 canvas (IoU 0.45–0.77 with the digit's box for the test's 10 held-out digits; it
overlaps the digit for 100 of 100) but names only 3 of those 10 right (46 of the 100): the best window is
off-centre by 4–8 pixels and the classifier never saw cut digits — the "objects split across windows" problem
of Michelucci ch. 6.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..models.convert import dense_to_conv


class WindowDetection(NamedTuple):
    """The best window: ``box`` xyxy pixels of the image, its class and that class's probability."""

    box: Tensor
    label: int
    score: float


@contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode without gradients, its mode restored afterwards (dropout must not differ)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def window_crops(image: Tensor, window: int, stride: int) -> Tensor:
    """Every ``window``×``window`` crop of a [C, H, W] image at ``stride``: [rows, cols, C, window, window] (views)."""
    if image.dim() != 3 or min(image.shape[-2:]) < window:
        raise ValueError(f"expected a [C, H, W] image of at least {window}×{window}; got {tuple(image.shape)}")
    return image.unfold(1, window, stride).unfold(2, window, stride).permute(1, 2, 0, 3, 4)


def sliding_window_scores(classifier: nn.Module, image: Tensor, window: int, stride: int) -> Tensor:
    """The classifier's scores [num_classes, rows, cols] on every crop of a [C, H, W] image, in one batch."""
    crops = window_crops(image, window, stride)
    rows, cols = crops.shape[:2]
    with _evaluating(classifier):
        scores = classifier(crops.reshape(rows * cols, *crops.shape[2:]))
    return scores.T.reshape(-1, rows, cols)


def convolutional_scores(classifier: nn.Module, image: Tensor, window: int | None = None) -> Tensor:
    """The same scores from one pass of ``dense_to_conv(classifier)`` over the whole [C, H, W] image.

    ``window`` is the classifier's input side (default: its ``default_cfg["input_size"]``); the grid's stride
    is the network's total stride.
    """
    if window is None:
        window = classifier.default_cfg["input_size"][-1]
    converted = dense_to_conv(classifier, (image.shape[0], window, window))
    with _evaluating(converted):
        return converted(image[None])[0]


def localize(scores: Tensor, window: int, stride: int) -> WindowDetection:
    """The window of highest class probability (softmax over the classes at each position) in a score grid."""
    probabilities = scores.softmax(dim=0)
    label, row, col = (int(i) for i in torch.unravel_index(probabilities.argmax(), probabilities.shape))
    box = torch.tensor([col * stride, row * stride, col * stride + window, row * stride + window])
    return WindowDetection(box, label, float(probabilities[label, row, col]))
