"""The one in-memory form every annotation format is read into and written from.

Boxes are ``(x1, y1, x2, y2)`` in continuous pixel coordinates (0 = the left/top edge of the first pixel,
``width``/``height`` = the right/bottom edge of the last), torchvision's convention. Each format's reader
converts to it (VOC's 1-based inclusive corners, COCO's xywh, YOLO's normalised centres) and each writer
converts back, so that every format pair converts through this module alone.

``sanitize_box`` is the single rule for boxes that do not fit their image: outside by more than
``tolerance`` pixels → clipped with a warning; thinner than ``min_size`` after clipping → dropped with a
warning. Both warnings name the annotation file and the object.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError, close_matches


class DataWarning(UserWarning):
    """An annotation was repaired or skipped: ``where`` names the file and object, ``action`` what was done."""

    def __init__(self, where: str, problem: str, action: str) -> None:
        super().__init__(f"{where}: {problem}; {action}")
        self.where, self.problem, self.action = where, problem, action


@dataclass
class ObjectAnnotation:
    """One object: its box, class name and flags; ``segmentation`` is COCO polygons or RLE in pixels."""

    box: tuple[float, float, float, float]
    category: str
    difficult: bool = False
    iscrowd: bool = False
    segmentation: Any = None
    area: float | None = None

    @property
    def box_area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


@dataclass
class ImageRecord:
    """One image: its file (relative to the set's ``image_dir``), size, objects and where it was described."""

    file_name: str
    width: int
    height: int
    objects: list[ObjectAnnotation] = field(default_factory=list)
    image_id: int | None = None
    source: str = ""

    @property
    def stem(self) -> str:
        return Path(self.file_name).stem


@dataclass
class AnnotationSet:
    """Images with their objects, and the class list that maps names to contiguous labels 0..C-1.

    ``category_ids[label]`` is the COCO category id of each label (COCO ids have gaps: 1..90 for 80
    classes); sets read from VOC or YOLO number their categories 1..C.
    """

    images: list[ImageRecord]
    categories: list[str]
    image_dir: Path
    category_ids: list[int] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        self.image_dir = Path(self.image_dir)
        if self.category_ids is None:
            self.category_ids = list(range(1, len(self.categories) + 1))
        if len(self.category_ids) != len(self.categories):
            raise DataError(f"{self.source}: {len(self.categories)} categories but {len(self.category_ids)} ids")
        if len(set(self.categories)) != len(self.categories):
            repeated = sorted(n for n, c in Counter(self.categories).items() if c > 1)
            raise DataError(f"{self.source}: category names repeat: {repeated}")
        self._labels = {name: i for i, name in enumerate(self.categories)}
        self._label_of_id = {cid: i for i, cid in enumerate(self.category_ids)}
        for n, record in enumerate(self.images):
            if record.image_id is None:
                record.image_id = n + 1
            for k, obj in enumerate(record.objects):
                if obj.category not in self._labels:
                    matches = close_matches(obj.category, self.categories, n=3)
                    raise DataError(
                        f"{record.source or record.file_name}: object {k} has the unknown class name "
                        f"'{obj.category}'"
                        + (f" (did you mean {', '.join(matches)}?)" if matches else "")
                        + f"; the classes are {self.categories[:10]}{'...' if self.num_classes > 10 else ''}"
                        " (set class_names to include it, or class_names: discover to use the names found)"
                    )

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    @property
    def num_objects(self) -> int:
        return sum(len(r.objects) for r in self.images)

    def label(self, category: str) -> int:
        return self._labels[category]

    def label_of_category_id(self, category_id: int) -> int:
        return self._label_of_id[category_id]

    def class_counts(self) -> dict[str, int]:
        counts = Counter(obj.category for r in self.images for obj in r.objects)
        return {name: counts.get(name, 0) for name in self.categories}

    def image_path(self, record: ImageRecord) -> Path:
        return self.image_dir / record.file_name


def sanitize_box(
    box: tuple[float, float, float, float],
    width: int,
    height: int,
    where: str,
    tolerance: float = 1.0,
    min_size: float = 1.0,
) -> tuple[float, float, float, float] | None:
    """The box clipped to the image, or ``None`` when it is degenerate; warns naming ``where`` either way.

    Non-finite coordinates are malformed input and raise ``DataError``. A box touching the border or
    overshooting it by less than ``tolerance`` pixels (float rounding in exports) is clipped silently.
    """
    if not all(math.isfinite(v) for v in box):
        raise DataError(f"{where}: box {list(box)} has a non-finite coordinate")
    x1, y1, x2, y2 = box
    clipped = (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height))
    if max(abs(a - b) for a, b in zip(box, clipped, strict=True)) > tolerance:
        problem = f"box {_fmt(box)} lies outside the {width}×{height} image"
        warnings.warn(DataWarning(where, problem, f"clipped to {_fmt(clipped)}"), stacklevel=2)
    if clipped[2] - clipped[0] < min_size or clipped[3] - clipped[1] < min_size:
        problem = f"degenerate box {_fmt(box)} (width or height below {min_size:g} px inside the image)"
        warnings.warn(DataWarning(where, problem, "dropped"), stacklevel=2)
        return None
    return clipped


def _fmt(box: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in box) + "]"
