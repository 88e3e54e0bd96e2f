"""Model registry: ``register_model`` / ``create_model`` / ``list_models``, as in timm.

A model is registered by decorating a builder function ``name(num_classes=..., in_chans=..., **options)``
in its family's file. ``create_model("timm:<name>")`` wraps any timm model behind the same contract.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from ..registry import Registry

TIMM_PREFIX = "timm:"
MODELS: Registry[Callable[..., nn.Module]] = Registry("model", hint="(any timm model: 'timm:<name>')")


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model builder under its function name; a second registration of a name is an error."""
    return MODELS.register(fn)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a glob; ``timm:<glob>`` lists timm's models."""
    if pattern.startswith(TIMM_PREFIX):
        import timm

        return [TIMM_PREFIX + n for n in timm.list_models(pattern[len(TIMM_PREFIX) :])]
    return MODELS.names(pattern)


def model_options(name: str) -> dict[str, Any]:
    """The options (keyword arguments and their defaults) a registered builder accepts."""
    return MODELS.options(name)


def create_model(
    name: str,
    num_classes: int | None = None,
    in_chans: int | None = None,
    pretrained: str | Path | dict | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model (or ``timm:<name>``).

    ``num_classes`` / ``in_chans`` default to the model's own (1000 / 3 for ImageNet models, 10 / 1 for
    LeNet-5). ``pretrained`` is a local checkpoint path or a state dict — never a download; the head is
    re-initialised when the class count differs and the first conv adapted when ``in_chans`` does.
    """
    sizes = {k: v for k, v in (("num_classes", num_classes), ("in_chans", in_chans)) if v is not None}
    if name.startswith(TIMM_PREFIX):
        from .timm_adapter import TimmBackbone

        model: nn.Module = TimmBackbone(name[len(TIMM_PREFIX) :], **sizes, **kwargs)
    else:
        model = MODELS.build(name, **sizes, **kwargs)
    if pretrained is not None:
        from .weights import load_pretrained

        load_pretrained(model, pretrained)
    return model
