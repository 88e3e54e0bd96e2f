"""Tasks as LightningModules, registered by name (``task.name`` in the config)."""

from .classification import ImageClassifier
from .detection import YoloDetector
from .localization import ObjectLocalizer
from .registry import TASKS, register_task
from .segmentation import SemanticSegmenter
