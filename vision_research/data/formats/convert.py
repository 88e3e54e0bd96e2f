"""Conversion between the formats: every reader returns an ``AnnotationSet`` and every writer takes one, so any
pair converts through it (the ``vr convert`` command), with a report of what was skipped or repaired.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

from ...errors import ConfigError, close_matches
from ..annotations import AnnotationSet, DataWarning
from .coco import read_coco, write_coco
from .voc import read_voc, write_voc
from .writing import ConversionReport
from .yolo import read_yolo, write_yolo, yolo_class_names

FORMATS = ("voc", "coco", "yolo")


def read_annotations(
    source: str | Path,
    fmt: str,
    image_set: str | None = "train",
    image_dir: str | Path | None = None,
    class_names: Sequence[str] | None = None,
) -> AnnotationSet:
    """Read ``source`` in ``fmt``: a VOC root, a COCO JSON file, or a YOLO root (images/ + labels/)."""
    check_format(fmt)
    source = Path(source)
    if fmt == "voc":
        return read_voc(source, image_set, class_names)
    if fmt == "coco":
        return read_coco(source, image_dir)
    split = Path(image_set) if image_set and (source / "images" / image_set).is_dir() else Path()
    names = class_names or yolo_class_names(source)
    return read_yolo(Path(image_dir or source / "images" / split), source / "labels" / split, names)


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        hint = close_matches(fmt, FORMATS)
        raise ConfigError(
            f"unknown annotation format '{fmt}'; use one of {', '.join(FORMATS)}"
            + (f" (did you mean {hint[0]}?)" if hint else "")
        )


def convert(
    source: str | Path,
    source_format: str,
    destination: str | Path,
    destination_format: str,
    image_set: str | None = "train",
    image_dir: str | Path | None = None,
    class_names: Sequence[str] | None = None,
    progress: bool = False,
) -> ConversionReport:
    """Convert between VOC, COCO and YOLO; the report counts what was written, skipped and repaired.

    COCO output goes to ``destination/annotations/instances_<set>.json`` with images in
    ``destination/images/``; VOC and YOLO output fill ``destination`` with their own layouts. Category
    ids are stable: VOC/YOLO classes become COCO ids 1..C in label order, COCO ids are kept.
    """
    check_format(destination_format)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        annotations = read_annotations(source, source_format, image_set, image_dir, class_names)
    destination = Path(destination)
    set_name = image_set or "all"
    if destination_format == "voc":
        report = write_voc(annotations, destination, set_name, progress=progress)
    elif destination_format == "coco":
        json_path = destination / "annotations" / f"instances_{set_name}.json"
        report = write_coco(annotations, json_path, destination / "images", progress=progress)
    else:
        report = write_yolo(annotations, destination, image_set, progress=progress)
    for warning in caught:
        action = warning.message.action if isinstance(warning.message, DataWarning) else ""
        if action == "dropped":
            report.note(report.skipped, "degenerate box", warning.message.where)
        elif action.startswith("clipped"):
            report.note(report.repaired, "box outside the image, clipped", warning.message.where)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return report
