"""Blocks shared by the architecture families (one place each; families import from here).

Where timm's layer is exactly the paper's, it is re-exported rather than rewritten:
``SEModule`` (Hu et al. 2018: GAP → FC C/r → ReLU → FC C → sigmoid), ``DropPath`` (stochastic depth),
``make_divisible`` (channel rounding of MobileNet/EfficientNet), ``create_conv2d`` with TF-style SAME
padding (``padding="same"``, asymmetric when the stride is > 1).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from timm.layers import DropPath, SEModule, create_conv2d, make_divisible
from torch import nn

__all__ = [
    "ConvNormAct",
    "DepthwiseMaxPool",
    "DropPath",
    "LocalResponseNorm",
    "SEModule",
    "SeparableConv2d",
    "create_conv2d",
    "make_divisible",
]


class ConvNormAct(nn.Sequential):
    """conv (no bias) → BatchNorm → activation, the unit of every modern CNN here (``act=None``: no activation).

    Children are named ``conv``, ``bn``, ``act``; padding defaults to "half the kernel" (SAME for stride 1).
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        dilation: int = 1,
        act: type[nn.Module] | None = nn.ReLU,
        norm: bool = True,
        eps: float = 1e-5,
    ) -> None:
        padding = dilation * (kernel_size - 1) // 2 if padding is None else padding
        layers: list[tuple[str, nn.Module]] = [
            ("conv", nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, dilation, groups, bias=not norm))
        ]
        if norm:
            layers.append(("bn", nn.BatchNorm2d(out_chs, eps=eps)))
        if act is not None:
            layers.append(("act", act(inplace=True) if act in (nn.ReLU, nn.ReLU6, nn.SiLU) else act()))
        super().__init__(OrderedDict(layers))


class LocalResponseNorm(nn.Module):
    """Local response normalisation, Krizhevsky et al. 2012 §3.3 (Géron ch. 14, eq. 14-2):

        b_i = a_i · (k + α · Σ_{j=max(0, i−n/2)}^{min(N−1, i+n/2)} a_j²)^(−β)

    with the paper's α (not divided by the window). ``torch.nn.LocalResponseNorm`` divides α by ``size``,
    so this passes α·n to it; AlexNet uses n = 5, α = 1e-4, β = 0.75, k = 2.
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0) -> None:
        super().__init__()
        if size < 1 or size % 2 == 0:
            raise ValueError(f"LocalResponseNorm needs an odd window (n/2 maps on each side); got size={size}")
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.local_response_norm(x, self.size, alpha=self.alpha * self.size, beta=self.beta, k=self.k)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class SeparableConv2d(nn.Sequential):
    """Depthwise k×k conv (one filter per input map) then a pointwise 1×1 conv (Chollet 2017, Xception §2).

    Children ``depthwise`` and ``pointwise``; no norm or activation in between, as in the paper.
    """

    def __init__(
        self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1, bias: bool = False
    ) -> None:
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            OrderedDict(
                depthwise=nn.Conv2d(in_chs, in_chs, kernel_size, stride, padding, dilation, groups=in_chs, bias=bias),
                pointwise=nn.Conv2d(in_chs, out_chs, 1, bias=bias),
            )
        )


class DepthwiseMaxPool(nn.Module):
    """Max over groups of ``k`` consecutive channels (Géron ch. 14, "depthwise max pooling").

    Learns invariances (rotation, thickness…) across feature maps; C must be divisible by k.
    """

    def __init__(self, k: int) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"DepthwiseMaxPool needs k >= 1; got {k}")
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if c % self.k:
            raise ValueError(f"DepthwiseMaxPool(k={self.k}) needs a channel count divisible by {self.k}; got {c}")
        return x.view(n, c // self.k, self.k, h, w).amax(dim=2)
