"""Tasks as LightningModules, registered by name (``task.name`` in the config)."""

from .classification import ImageClassifier
from .detection import YoloDetector
from .registry import TASKS, register_task
from .segmentation import SemanticSegmenter

__all__ = ["TASKS", "ImageClassifier", "SemanticSegmenter", "YoloDetector", "register_task"]
