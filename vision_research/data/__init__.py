"""Datamodules (registered by name), formats and transforms."""

from . import digits  # noqa: F401  (importing a module registers its datamodules)
from .digits import DigitsDataModule, MNISTDataModule, read_idx
from .registry import create_datamodule, list_datamodules, register_datamodule

__all__ = [
    "DigitsDataModule",
    "MNISTDataModule",
    "create_datamodule",
    "list_datamodules",
    "read_idx",
    "register_datamodule",
]
