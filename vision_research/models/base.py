"""The backbone contract every model of the framework honours (ARCHITECTURE.md, "Contracts"; timm's vocabulary).

- ``forward(x)`` returns logits; it is ``forward_head(forward_features(x))``.
- ``forward_features(x)`` returns one feature map per stage, finest first.
- ``feature_info`` describes those maps: per stage ``num_chs``, ``reduction`` (the product of the strides
  up to that stage) and ``module`` (the name of the sub-module producing it). Heads read only this.
- ``reset_classifier(n)`` swaps the classifier for one with ``n`` outputs (transfer learning).
- ``default_cfg`` holds the input size, normalisation and the names of the first conv and classifier.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


def feature_info(num_chs: int, reduction: int, module: str) -> dict[str, Any]:
    """One stage's entry of ``feature_info``."""
    return {"num_chs": int(num_chs), "reduction": int(reduction), "module": module}


def default_cfg(
    input_size: tuple[int, int, int],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    num_classes: int,
    first_conv: str,
    classifier: str,
    **extra: Any,
) -> dict[str, Any]:
    """A ``default_cfg`` dict in timm's vocabulary (``input_size`` is C, H, W)."""
    return {
        "input_size": tuple(input_size),
        "mean": tuple(mean),
        "std": tuple(std),
        "num_classes": num_classes,
        "first_conv": first_conv,
        "classifier": classifier,
        **extra,
    }


class Backbone(nn.Module, ABC):
    """Base class of the framework's own models; subclasses define the stages and the head."""

    feature_info: list[dict[str, Any]]
    default_cfg: dict[str, Any]
    num_classes: int

    @abstractmethod
    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """One feature map per stage, finest first, as ``feature_info`` declares."""

    @abstractmethod
    def forward_head(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Logits from the stage maps (the classification head reads the last one)."""

    def get_classifier(self) -> nn.Module:
        return self.get_submodule(self.default_cfg["classifier"])

    @abstractmethod
    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a freshly initialised one with ``num_classes`` outputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class PooledFCBackbone(Backbone):
    """A backbone whose head is torchvision's ``classifier(flatten(avgpool(last stage map)))``, ``classifier`` an
    ``nn.Sequential`` ending in the output layer (AlexNet, VGG); subclasses say how a new output layer starts."""

    avgpool: nn.Module
    flatten: nn.Module
    classifier: nn.Sequential

    def forward_head(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.flatten(self.avgpool(features[-1])))

    def reset_classifier(self, num_classes: int) -> None:
        old = self.classifier[-1]
        self.classifier[-1] = nn.Linear(old.in_features, num_classes).to(old.weight.device)
        self.init_output_layer(self.classifier[-1])
        self.num_classes = self.default_cfg["num_classes"] = num_classes

    @abstractmethod
    def init_output_layer(self, layer: nn.Linear) -> None:
        """Initialise ``layer``, a new output layer (``reset_classifier``), as the model's own."""


def sequential_stages(
    layers: nn.Sequential, x: torch.Tensor, stage_ends: set[int] | frozenset[int]
) -> list[torch.Tensor]:
    """Run ``layers`` on ``x`` and return the outputs of the layers whose index is in ``stage_ends``."""
    features = []
    for index, layer in enumerate(layers):
        x = layer(x)
        if index in stage_ends:
            features.append(x)
    return features


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode inside the block; afterwards every sub-module is back in its own mode (a frozen
    backbone's batch norms held in eval mode during training stay there, which ``module.train(mode)`` would undo)."""
    modes = [(sub, sub.training) for sub in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for sub, training in modes:
            sub.training = training


def freeze_unused_by_features(
    model: nn.Module, in_chans: int, stages: Sequence[int] | None = None, size: int = 64
) -> list[str]:
    """Stop training the parameters that the stage maps a head reads do not depend on: the classifier, auxiliary
    heads, and the stages deeper than the deepest one read (``stages``: indices into ``forward_features``' maps;
    default all of them).

    A backbone under a segmentation or detection head only runs its stages; parameters left out would get
    no gradient, which DDP reports as an error and weight decay would still shrink. Returns their names.
    """
    with evaluating(model):  # no batch-norm statistics are updated by the probe
        features = model.forward_features(torch.zeros(2, in_chans, size, size))
        read = features if stages is None else [features[i] for i in stages]
        sum(f.float().sum() for f in read).backward()
    unused = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    for name, parameter in model.named_parameters():
        parameter.grad = None
        if name in unused:
            parameter.requires_grad_(False)
    return unused
