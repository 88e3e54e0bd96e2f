"""Datamodule registry: ``data.name`` in the config selects one; its other keys are its options.

The built-in datamodules register when their modules are imported: every module of this package is imported
before the first lookup (``_import_built_in``), not when the package is, so that ``import vision_research.data``
costs no torch or Lightning import, and a new datamodule file registers without being listed anywhere.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Any

from ..registry import Registry

if TYPE_CHECKING:
    import lightning as L


def _import_built_in() -> None:
    package = importlib.import_module(__package__)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{__package__}.{module.name}")


DATAMODULES: Registry[type[L.LightningDataModule]] = Registry("datamodule", load=_import_built_in)


def register_datamodule(cls: type | None = None, *, name: str | None = None) -> Any:
    """Class decorator registering a LightningDataModule under ``name`` (default: the class name)."""
    return DATAMODULES.register(cls, name=name)


def create_datamodule(name: str, **options: Any) -> L.LightningDataModule:
    """Build the datamodule registered as ``name``; unknown names or options raise ``ConfigError``."""
    return DATAMODULES.build(name, **options)


def list_datamodules(pattern: str = "*") -> list[str]:
    return DATAMODULES.names(pattern)
