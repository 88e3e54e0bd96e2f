"""Batch normalisation folded into the convolution before it.

At inference a batch-norm layer is a fixed per-channel affine map, ``γ (x − μ) / √(σ² + ε) + β`` with the
running statistics (Ioffe & Szegedy 2015, §3.1), so a convolution followed by one is a single convolution with
scaled weights and a shifted bias (``torch.nn.utils.fusion.fuse_conv_bn_eval``): one pass over the activations
instead of two. The pairs are found by running the module once on an example with forward hooks: a batch norm
whose input is, unmodified, the output of a convolution, each called once per forward. The folded copy's outputs
are then compared with the module's on the example; a pair the hooks cannot see through (the convolution's output
also used elsewhere) would change them, and is reported instead of returned.
"""

from __future__ import annotations

import copy
from collections import Counter

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch.utils import _pytree as pytree

from ..errors import ConfigError

# Exact types: subclasses (timm's BatchNormAct2d adds an activation) are left alone.
CONV_THEN_NORM = {nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d, nn.Conv3d: nn.BatchNorm3d}
TOLERANCE = 1e-4  # of max(1, output scale); folding changes the rounding only


def conv_bn_pairs(module: nn.Module, example: Tensor) -> list[tuple[str, str]]:
    """``(convolution, batch norm)`` submodule names where the batch norm reads the convolution's output as is."""
    norms = set(CONV_THEN_NORM.values())
    made: dict[int, tuple[str, Tensor, int]] = {}  # id(output) → (conv, output kept alive, its version)
    calls: Counter[str] = Counter()
    pairs: list[tuple[str, str]] = []

    def after_conv(name: str):
        def hook(_: nn.Module, __: tuple, output: Tensor) -> None:
            calls[name] += 1
            made[id(output)] = (name, output, output._version)

        return hook

    def after_norm(name: str):
        def hook(norm: nn.Module, inputs: tuple, _: Tensor) -> None:
            calls[name] += 1
            conv_name, output, version = made.get(id(inputs[0]), (None, None, None))
            if output is inputs[0] and output._version == version:
                conv = module.get_submodule(conv_name)
                if CONV_THEN_NORM[type(conv)] is type(norm):
                    pairs.append((conv_name, name))

        return hook

    handles = []
    for name, child in module.named_modules():
        if type(child) in CONV_THEN_NORM:
            handles.append(child.register_forward_hook(after_conv(name)))
        elif type(child) in norms:
            handles.append(child.register_forward_hook(after_norm(name)))
    try:
        with torch.no_grad():
            module.eval()(example)
    finally:
        for handle in handles:
            handle.remove()
    return [(conv, norm) for conv, norm in pairs if calls[conv] == 1 and calls[norm] == 1]


def fold_batch_norms(module: nn.Module, example: Tensor) -> nn.Module:
    """A copy of ``module`` (eval mode) with each convolution + batch norm pair folded into the convolution and
    the batch norm replaced by ``nn.Identity``; checked against ``module`` on ``example``."""
    folded = copy.deepcopy(module).eval()
    for conv_name, norm_name in conv_bn_pairs(folded, example):
        conv = folded.get_submodule(conv_name)
        folded.set_submodule(conv_name, fuse_conv_bn_eval(conv, folded.get_submodule(norm_name)))
        folded.set_submodule(norm_name, nn.Identity())
    with torch.no_grad():
        expected, found = (pytree.tree_leaves(m.eval()(example)) for m in (module, folded))
    scale = max(1.0, *(t.abs().max().item() for t in expected))
    difference = max((a - b).abs().max().item() for a, b in zip(expected, found, strict=True))
    if difference > TOLERANCE * scale:
        raise ConfigError(
            f"backend=fused: folding the batch norms of {type(module).__name__} changes its outputs by "
            f"{difference:.3g} (a convolution's output is also used before its batch norm); use backend=compile"
        )
    return folded


def count_batch_norms(module: nn.Module) -> int:
    """The batch-norm layers left in ``module``."""
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())
