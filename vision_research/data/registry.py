"""Datamodule registry: ``data.name`` in the config selects one; its other keys are its options."""

from __future__ import annotations

from typing import Any

import lightning as L

from ..registry import Registry

DATAMODULES: Registry[type[L.LightningDataModule]] = Registry("datamodule")


def register_datamodule(cls: type | None = None, *, name: str | None = None) -> Any:
    """Class decorator registering a LightningDataModule under ``name`` (default: the class name)."""
    return DATAMODULES.register(cls, name=name)


def create_datamodule(name: str, **options: Any) -> L.LightningDataModule:
    """Build the datamodule registered as ``name``; unknown names or options raise ``ConfigError``."""
    return DATAMODULES.build(name, **options)


def list_datamodules(pattern: str = "*") -> list[str]:
    return DATAMODULES.names(pattern)
