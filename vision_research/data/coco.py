"""``CocoDataModule``: COCO instances data (Lin et al. 2014) for detection, or segmentation from its masks.

Layout (nothing is downloaded)::

    root/annotations/instances_<split>.json     e.g. instances_train2017.json
    root/<split>/ or root/images/<split>/ or root/images/

``splits`` maps train / val / test to a split name (``train2017``) or to a JSON path relative to root
(``annotations/instances.json``); a null val split is cut from train. COCO's category ids (1..90 with
gaps) become contiguous labels 0..C-1; ``annotations(split).category_ids`` maps them back.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from ..errors import DataError
from .annotated import AnnotationFilesDataModule, MaskReader
from .annotations import AnnotationSet
from .formats import coco_class_map, read_coco
from .registry import register_datamodule

COCO_LAYOUT = "annotations/instances_<split>.json with images in <split>/, images/<split>/ or images/"


def coco_json_path(root: Path, split: str) -> Path:
    """``split`` as a JSON path (``annotations/x.json``) or a split name (``train2017``)."""
    path = root / split if split.endswith(".json") else root / "annotations" / f"instances_{split}.json"
    if not path.is_file():
        found = sorted(p.name for p in (root / "annotations").glob("*.json")) if (root / "annotations").is_dir() else []
        raise DataError(
            f"{path}: COCO annotation file not found (expected {COCO_LAYOUT} under {root})"
            + (f"; found: {', '.join(found)}" if found else "")
            + "; nothing is downloaded"
        )
    return path


@register_datamodule(name="coco")
class CocoDataModule(AnnotationFilesDataModule):
    """COCO-layout detection / segmentation data under ``root``; ``image_dirs`` maps a split to its image folder
    (relative to root) where the default places (module docstring) do not hold it."""

    default_splits = {"train": "train2017", "val": "val2017", "test": None}

    def __init__(self, root: str, *, image_dirs: dict[str, str | None] | None = None, **options: Any) -> None:
        super().__init__(root, **options)
        self.image_dirs = image_dirs or {}

    @staticmethod
    def check_root(root: Path) -> Path:
        if not root.is_dir():
            raise DataError(f"{root}: COCO root not found (expected {COCO_LAYOUT}); nothing is downloaded")
        return root

    def read_split(self, split: str) -> AnnotationSet | None:
        name = self.splits.get(split)
        if name is None:
            return None
        image_dir = self.image_dirs.get(split)
        return read_coco(coco_json_path(self.root, name), self.root / image_dir if image_dir else None)

    def mask_reader(self, annotations: AnnotationSet, num_classes: int) -> MaskReader:
        return partial(coco_class_map, annotations=annotations)  # picklable for spawned loader workers
