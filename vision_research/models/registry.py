"""Model registry: ``register_model`` / ``register_variants`` / ``create_model`` / ``list_models``, as in timm.

A family declares its variants as data — name → the constructor's architecture arguments, option defaults and a
line citing the paper — and registers them in one call (``register_variants``), as timm's ``_create_*`` functions
take ``model_args``; a builder written by hand registers with the ``register_model`` decorator
(``name(num_classes=..., in_chans=..., **options)``). Either way a model's options are read from a signature, the
constructor's for a variant. ``create_model("timm:<name>")`` wraps any timm model behind the same contract.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..registry import Registry

TIMM_PREFIX = "timm:"
MODELS: Registry[Callable[..., nn.Module]] = Registry("model", hint="(any timm model: 'timm:<name>')")


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model builder under its function name; a second registration of a name is an error."""
    return MODELS.register(fn)


@dataclass(frozen=True)
class Variant:
    """One model of a family: the constructor's ``architecture`` arguments (fixed, not options), the ``defaults`` of
    its options where they differ from the constructor's, and ``doc``, a line naming the paper and the size."""

    architecture: Mapping[str, Any]
    doc: str
    defaults: Mapping[str, Any] = field(default_factory=dict)


def register_variants(constructor: Callable[..., nn.Module], variants: Mapping[str, Variant]) -> None:
    """Register ``name(**options) = constructor(**architecture, **options)`` for each variant. Its options are the
    constructor's keyword parameters that the architecture does not fix, with the variant's defaults."""
    for name, variant in variants.items():
        register_model(_variant_builder(name, constructor, variant))


def _variant_builder(name: str, constructor: Callable[..., nn.Module], variant: Variant) -> Callable[..., nn.Module]:
    parameters = [
        p.replace(kind=p.KEYWORD_ONLY, default=variant.defaults.get(p.name, p.default))
        for p in inspect.signature(constructor).parameters.values()
        if p.name not in variant.architecture and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    unknown = set(variant.defaults) - {p.name for p in parameters}
    if unknown:
        raise TypeError(f"variant {name}: {sorted(unknown)} are not options of {constructor.__name__}")

    def build(**options: Any) -> nn.Module:
        return constructor(**variant.architecture, **{**variant.defaults, **options})

    build.__name__ = build.__qualname__ = name
    build.__doc__, build.__module__ = variant.doc, constructor.__module__
    build.__signature__ = inspect.Signature(parameters, return_annotation=constructor)  # type: ignore[attr-defined]
    return build


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
    LeNet-5). ``pretrained`` is a local checkpoint path (in this framework's layout), a state dict, or a tag of
    published weights, ``torchvision:<WeightsEnum name>`` or ``timm:<model>.<tag>``, fetched into (or read from)
    torch's / Hugging Face's cache (:mod:`vision_research.models.hub`); the head is re-initialised when the class
    count differs and the first conv adapted when ``in_chans`` does.
    """
    sizes = {k: v for k, v in (("num_classes", num_classes), ("in_chans", in_chans)) if v is not None}
    if name.startswith(TIMM_PREFIX):
        from .timm_adapter import TimmBackbone

        model: nn.Module = TimmBackbone(name[len(TIMM_PREFIX) :], **sizes, **kwargs)
    else:
        model = MODELS.build(name, **sizes, **kwargs)
    if pretrained is not None:
        from .hub import load_weights

        load_weights(model, pretrained)
    return model
