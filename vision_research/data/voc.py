"""``VOCDataModule``: Pascal VOC (Everingham et al. 2010) detection or semantic segmentation.

Layout (``root`` is e.g. ``VOCdevkit/VOC2012``; nothing is downloaded)::

    Annotations/<id>.xml   JPEGImages/<id>.jpg   ImageSets/Main/<set>.txt
    SegmentationClass/<id>.png (class indices, 255 = ignore)   ImageSets/Segmentation/<set>.txt

Detection keeps ``difficult`` objects, flagged in the targets (VOC AP leaves them out). Segmentation
classes are background + the class names (21 for VOC); ``num_classes`` overrides the count for masks
with other index sets.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from .annotated import AnnotationFilesDataModule, MaskReader
from .annotations import AnnotationSet, DataWarning, ImageRecord
from .formats import (
    DISCOVER,
    VOC_CLASSES,
    check_class_names,
    check_voc_root,
    load_mask,
    read_voc_xml,
    voc_class_names,
    voc_ids,
)
from .images import IMAGE_SUFFIXES, image_size
from .registry import register_datamodule


def _voc_class_map(record: ImageRecord, folder: Path, num_classes: int) -> np.ndarray:
    return load_mask(folder / f"{record.stem}.png", num_classes, (record.width, record.height))


def _check_mask_class_names(names: list[str] | str | None) -> None:
    """The class names of VOC masks are listed (not discovered) and leave out background, their index 0."""
    if names == DISCOVER:
        raise ConfigError(f"data.class_names: {DISCOVER} reads the names of detection objects; list them for masks")
    if any(str(name).lower() == "background" for name in names or ()):
        raise ConfigError(
            f"data.class_names: index 0 of VOC masks is already background; list only the object classes (got {names})"
        )


@register_datamodule(name="voc")
class VOCDataModule(AnnotationFilesDataModule):
    """Pascal VOC-layout data under ``root``; ``splits`` maps train / val / test to image-set names."""

    check_root = staticmethod(check_voc_root)

    def __init__(
        self,
        root: str,
        *,
        class_names: Sequence[str] | str | None = None,
        num_classes: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(root, **options)
        self.names = check_class_names(class_names)
        if self.task == "segmentation":
            _check_mask_class_names(self.names)
        self.segmentation_classes = num_classes
        self._records: dict[str, list[ImageRecord]] | None = None
        if num_classes is not None and self.task != "segmentation":
            raise ConfigError("data.num_classes applies to segmentation masks; detection classes come from names")

    def _has_set(self, split: str, kind: str) -> bool:
        """Whether ``split``'s image set exists; a configured one that does not is said (it falls back)."""
        name = self.splits.get(split)
        if name is None:
            return False
        list_file = self.root / "ImageSets" / kind / f"{name}.txt"
        if not list_file.is_file():
            fallback = "cut from train (data.val_fraction)" if split == "val" else "taken from val"
            warnings.warn(
                DataWarning(str(list_file), f"no {split} image set", f"the {split} split is {fallback}"), stacklevel=2
            )
            return False
        return True

    def _detection_records(self) -> dict[str, list[ImageRecord]]:
        """Every configured image set's records, read once (class names are discovered across all of them)."""
        if self._records is None:
            self._records = {}
            for split, name in self.splits.items():
                if name is not None and (split == "train" or self._has_set(split, "Main")):
                    xmls = [self.root / "Annotations" / f"{i}.xml" for i in voc_ids(self.root, name)]
                    self._records[split] = [read_voc_xml(x, self.root / "JPEGImages") for x in xmls]
        return self._records

    def read_split(self, split: str) -> AnnotationSet | None:
        if self.task == "detection":
            records = self._detection_records()
            if split not in records:
                return None
            names = voc_class_names([r for rs in records.values() for r in rs], self.names)
            return AnnotationSet(records[split], names, self.root / "JPEGImages", source=str(self.root))
        name = self.splits.get(split)
        if name is None or (split != "train" and not self._has_set(split, "Segmentation")):
            return None
        records = [self._segmentation_record(i) for i in voc_ids(self.root, name, kind="Segmentation")]
        return AnnotationSet(records, self.names or list(VOC_CLASSES), self.root / "JPEGImages", source=str(self.root))

    def _segmentation_record(self, image_id: str) -> ImageRecord:
        """The image of a segmentation id (its objects are not needed: the mask is the target)."""
        for path in sorted((self.root / "JPEGImages").glob(f"{image_id}.*")):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                width, height = image_size(path)
                return ImageRecord(path.name, width, height, source=str(self.root / "SegmentationClass" / image_id))
        raise DataError(f"{self.root / 'JPEGImages'}: no image for the segmentation id '{image_id}'")

    @property
    def class_names(self) -> tuple[str, ...]:
        names = super().class_names
        if self.task == "segmentation" and self.segmentation_classes is not None:
            count = self.segmentation_classes
            return tuple(names[i] if i < len(names) else f"class_{i}" for i in range(count))
        return names

    def mask_reader(self, annotations: AnnotationSet, num_classes: int) -> MaskReader:
        return partial(_voc_class_map, folder=self.root / "SegmentationClass", num_classes=num_classes)
