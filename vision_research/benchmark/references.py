"""The reference implementations ``--compare`` measures ours against: torchvision's and timm's models of the same
architecture, by name."""

from __future__ import annotations

import warnings

from torch import nn

from ..errors import ConfigError, close_matches
from .settings import LIBRARIES

# Our names that the reference library files under another name for the same network (same parameter count).
REFERENCE_ALIASES = {"timm": {"xception": "legacy_xception", "mobilenet_v1": "mobilenetv1_100"}}


def reference_name(name: str, library: str) -> str:
    """The architecture's name in ``library``: ``timm:resnet18`` → ``resnet18``, and the aliases above
    (``xception`` → timm's ``legacy_xception``, Chollet 2017 as ours)."""
    from ..models.registry import TIMM_PREFIX

    name = name[len(TIMM_PREFIX) :] if name.startswith(TIMM_PREFIX) else name
    return REFERENCE_ALIASES.get(library, {}).get(name, name)


def reference_names(library: str) -> list[str]:
    """The classification models ``library`` (torchvision or timm) can build."""
    check_library(library)
    if library == "torchvision":
        import torchvision

        return torchvision.models.list_models(module=torchvision.models)
    import timm

    return timm.list_models()


def check_library(library: str) -> str:
    """``library`` if ``--compare`` supports it, else a ``ConfigError``."""
    if library not in LIBRARIES:
        raise ConfigError(f"--compare {library!r}: choose one of {', '.join(LIBRARIES)}")
    return library


def check_reference(name: str, library: str) -> str:
    """The reference architecture's name, or a ``ConfigError`` when ``library`` has no model of that name."""
    ref = reference_name(name, library)
    available = reference_names(library)
    if ref not in available:
        matches = close_matches(ref, available)
        hint = f" Closest {library} names: {', '.join(matches)}." if matches else ""
        ours = f" (for '{name}')" if ref != name else ""
        raise ConfigError(f"--compare {library}: {library} has no model named '{ref}'{ours} to compare with.{hint}")
    return ref


def reference_model(name: str, library: str, num_classes: int = 1000, in_chans: int = 3) -> nn.Module:
    """The reference library's own implementation of architecture ``name``, randomly initialised."""
    ref = check_reference(name, library)
    if library == "torchvision":
        import torchvision

        if in_chans != 3:
            raise ConfigError(f"--compare torchvision: torchvision models take 3 input channels, '{name}' {in_chans}")
        with warnings.catch_warnings():  # googlenet / inception_v3: a notice about their future default init
            warnings.filterwarnings("ignore", category=FutureWarning, module="torchvision")
            return torchvision.models.get_model(ref, weights=None, num_classes=num_classes)
    import timm

    return timm.create_model(ref, pretrained=False, num_classes=num_classes, in_chans=in_chans)
