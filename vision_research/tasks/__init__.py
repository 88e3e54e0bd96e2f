"""Tasks as LightningModules, registered by name (``task.name`` in the config)."""

from .classification import ImageClassifier
from .registry import TASKS, register_task

__all__ = ["TASKS", "ImageClassifier", "register_task"]
