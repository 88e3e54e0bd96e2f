"""Shared blocks: each against its definition computed by hand."""

import pytest
import torch
from torch import nn

from vision_research.models.layers import ConvNormAct, DepthwiseMaxPool, LocalResponseNorm, SeparableConv2d


def test_conv_norm_act_layout_and_same_padding():
    block = ConvNormAct(4, 8, 3, stride=2)
    assert [name for name, _ in block.named_children()] == ["conv", "bn", "act"]
    assert block.conv.bias is None and block(torch.randn(1, 4, 9, 9)).shape == (1, 8, 5, 5)
    plain = ConvNormAct(4, 8, 1, act=None, norm=False)
    assert [name for name, _ in plain.named_children()] == ["conv"] and plain.conv.bias is not None


def test_lrn_uses_the_papers_alpha():
    x = torch.rand(1, 7, 2, 2)
    n, alpha, beta, k = 5, 1e-2, 0.75, 2.0
    expected = torch.empty_like(x)
    for i in range(7):
        window = x[:, max(0, i - n // 2) : min(6, i + n // 2) + 1]
        expected[:, i] = x[:, i] * (k + alpha * window.pow(2).sum(1)) ** -beta
    torch.testing.assert_close(LocalResponseNorm(n, alpha, beta, k)(x), expected)


def test_separable_conv_is_depthwise_then_pointwise():
    conv = SeparableConv2d(4, 6, 3)
    assert conv.depthwise.groups == 4 and conv.pointwise.kernel_size == (1, 1)
    assert sum(p.numel() for p in conv.parameters()) == 4 * 9 + 4 * 6  # vs 4·6·9 = 216 for a full conv
    x = torch.randn(1, 4, 5, 5)
    by_hand = nn.functional.conv2d(
        nn.functional.conv2d(x, conv.depthwise.weight, padding=1, groups=4), conv.pointwise.weight
    )
    torch.testing.assert_close(conv(x), by_hand)


def test_depthwise_max_pool_takes_the_max_of_channel_groups():
    x = torch.arange(12.0).view(1, 6, 1, 2)
    out = DepthwiseMaxPool(3)(x)
    assert out.shape == (1, 2, 1, 2)
    torch.testing.assert_close(out, torch.stack([x[:, 0:3].amax(1), x[:, 3:6].amax(1)], 1))
    with pytest.raises(ValueError, match="divisible by 4"):
        DepthwiseMaxPool(4)(x)
