"""Datamodules (registered by name), annotation formats and transforms.

Classification: ``mnist``, ``digits`` (embedded), ``image_folder`` (your photos). Detection and
segmentation: ``shapes`` (embedded, generated), ``coco``, ``voc``, ``yolo``.
"""

from ..geometry import boxes_to_original
from . import coco_datamodule, digits, folder, shapes, voc_datamodule, yolo_datamodule  # noqa: F401  (importing a module registers its datamodules)
from .annotations import AnnotationSet, DataWarning, ImageRecord, ObjectAnnotation
from .coco_datamodule import CocoDataModule
from .digits import DigitsDataModule, MNISTDataModule, read_idx
from .folder import ImageFolderDataModule
from .formats import convert, read_coco, read_voc, read_yolo, write_coco, write_voc, write_yolo
from .registry import create_datamodule, list_datamodules, register_datamodule
from .shapes import ShapesDataModule, generate_shapes
from .transforms import build_classification_transforms, build_transforms
from .voc_datamodule import VOCDataModule
from .yolo_datamodule import YoloDataModule
