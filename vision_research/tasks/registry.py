"""Task registry: ``task.name`` in the config selects a LightningModule; its other keys are its options."""

from __future__ import annotations

from typing import Any

import lightning as L

from ..registry import Registry

TASKS: Registry[type[L.LightningModule]] = Registry("task")


def register_task(cls: type | None = None, *, name: str | None = None) -> Any:
    """Class decorator registering a LightningModule under ``name``."""
    return TASKS.register(cls, name=name)
