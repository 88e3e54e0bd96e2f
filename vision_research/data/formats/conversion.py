"""Conversion between the formats: every reader returns an ``AnnotationSet`` and every writer takes one, so any
pair converts through it (the ``vr convert`` command), with a report of what was skipped or repaired.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

from ..annotations import AnnotationSet, DataWarning
from . import check_format
from .writing import ConversionReport


def read_annotations(
    source: str | Path,
    fmt: str,
    image_set: str | None = "train",
    image_dir: str | Path | None = None,
    class_names: Sequence[str] | None = None,
) -> AnnotationSet:
    """Read ``source`` in ``fmt`` (a row of ``FORMATS``): a VOC root, a COCO JSON file, a YOLO root (images/ +
    labels/)."""
    return check_format(fmt).read(source, image_set, image_dir, class_names)


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
    """Convert between two formats of ``FORMATS``; the report counts what was written, skipped and repaired.

    The output fills ``destination`` with the format's layout (COCO: ``annotations/instances_<set>.json`` with the
    images in ``images/``), images hard-linked. Category ids are stable: VOC/YOLO classes become COCO ids 1..C in
    label order, COCO ids are kept.
    """
    writer = check_format(destination_format)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        annotations = read_annotations(source, source_format, image_set, image_dir, class_names)
    report = writer.write(annotations, destination, image_set, progress=progress)
    for warning in caught:
        action = warning.message.action if isinstance(warning.message, DataWarning) else ""
        if action == "dropped":
            report.note(report.skipped, "degenerate box", warning.message.where)
        elif action.startswith("clipped"):
            report.note(report.repaired, "box outside the image, clipped", warning.message.where)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return report
