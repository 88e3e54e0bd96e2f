"""Dense → convolution conversion: the FCN trick of Long et al. 2015 §3.1 and Géron ch. 14.

A dense layer with N units reading a flattened C×h×w map is a convolution with N filters of size h×w
(VALID padding) whose kernels are the dense weights reshaped; the dense layers after it become 1×1
convolutions. The converted network gives the same scores on the training size and, on a larger image,
a map of scores — one per window position, stride = the network's total stride — in a single pass.
"""

from __future__ import annotations

import torch
from torch import nn


def _leaves_in_order(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if not list(m.children())]


def dense_to_conv(model: nn.Module, input_size: tuple[int, int, int]) -> nn.Sequential:
    """An ``nn.Sequential`` of ``model``'s layers with Flatten + Linear turned into convolutions.

    ``model`` must apply its leaf modules one after the other (Sequential-style CNNs such as
    ``fashion_mnist_cnn`` or ``lenet5_modern``); ``input_size`` (C, H, W) is the size it was trained on.
    The result is checked: on that size it must reproduce ``model``'s output, else a ``ValueError`` says so.
    """
    leaves = _leaves_in_order(model)
    flatten_inputs: dict[int, torch.Size] = {}
    hooks = [
        leaf.register_forward_hook(lambda m, i, o, idx=idx: flatten_inputs.__setitem__(idx, i[0].shape[1:]))
        for idx, leaf in enumerate(leaves)
        if isinstance(leaf, nn.Flatten)
    ]
    was_training = model.training
    model.eval()
    x = torch.randn(2, *input_size)
    try:
        with torch.no_grad():
            expected = model(x)
    finally:
        for hook in hooks:
            hook.remove()
    layers: list[nn.Module] = []
    pending: torch.Size | None = None  # the C×h×w map a Flatten just consumed
    for idx, leaf in enumerate(leaves):
        if isinstance(leaf, nn.Flatten):
            pending = flatten_inputs[idx]
        elif isinstance(leaf, nn.Linear):
            channels, kernel = (pending[0], tuple(pending[1:])) if pending is not None else (leaf.in_features, (1, 1))
            conv = nn.Conv2d(channels, leaf.out_features, kernel, bias=leaf.bias is not None)
            with torch.no_grad():
                conv.weight.copy_(leaf.weight.reshape(conv.weight.shape))
                if leaf.bias is not None:
                    conv.bias.copy_(leaf.bias)
            layers.append(conv)
            pending = None
        else:
            layers.append(leaf)
    converted = nn.Sequential(*layers).eval()
    with torch.no_grad():
        got = converted(x)
    model.train(was_training)
    if got.shape[-2:] != (1, 1) or not torch.allclose(got.flatten(1), expected, atol=1e-5, rtol=1e-4):
        raise ValueError(
            f"{type(model).__name__} does not apply its layers in sequence (or has layers other than "
            "conv/pool/activation/dropout/linear in its head); dense_to_conv cannot convert it"
        )
    return converted.train(was_training)
