"""``YoloDataModule``: YOLO txt exports (Darknet / Ultralytics layout) for detection.

Layout (nothing is downloaded)::

    root/images/[<split>/]<name>.jpg     root/labels/[<split>/]<name>.txt   (class cx cy w h, normalised)
    root/classes.txt or root/data.yaml (names), or data.class_names in the config

``splits`` maps train / val / test to sub-folders of images/; when images/<train split>/ does not exist
every image under images/ is the training set and validation is cut from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError
from .annotated import AnnotationFilesDataModule
from .annotations import AnnotationSet
from .formats import YOLO_LAYOUT, read_yolo, yolo_class_names
from .registry import register_datamodule


@register_datamodule(name="yolo")
class YoloDataModule(AnnotationFilesDataModule):
    """YOLO-layout detection data under ``root``; ``class_names`` default to the dataset's own list."""

    def __init__(self, root: str, *, class_names: Sequence[str] | None = None, **options: Any) -> None:
        super().__init__(root, **options)
        self.names = class_names or yolo_class_names(self.root)

    @staticmethod
    def check_root(root: Path) -> Path:
        if not (root / "images").is_dir():
            raise DataError(f"{root}: not a YOLO dataset folder (expected {YOLO_LAYOUT}); nothing is downloaded")
        return root

    def read_split(self, split: str) -> AnnotationSet | None:
        name = self.splits.get(split)
        has_folder = name is not None and (self.root / "images" / name).is_dir()
        if not has_folder:
            if split != "train":
                return None
            return read_yolo(self.root / "images", self.root / "labels", self.names)
        return read_yolo(self.root / "images" / name, self.root / "labels" / name, self.names)
