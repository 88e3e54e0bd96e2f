"""Annotation formats — Pascal VOC XML, COCO instances JSON, YOLO txt, segmentation masks — one module each, with
their readers (validating, with errors naming the file, line or object) and writers; the conversion between them in
``conversion.py``.

Every reader returns an :class:`~vision_research.data.annotations.AnnotationSet` and every writer takes one, so any
pair converts through it (``convert``; the ``vr convert`` command). Malformed files raise ``DataError`` naming the
file (and line or object); repairable boxes are clipped or dropped with a ``DataWarning`` by the rule in
``annotations.sanitize_box``. The datamodules that read these formats live beside this package (``coco.py``,
``voc.py``, ``yolo.py``).

``FORMATS`` is the one table of the annotation formats: a row per format says its layout in a line and names its
module. Whatever handles any format goes through it — ``convert`` and ``read_annotations``, ``stats.detect_format``
(``vr data stats``), the shapes data (a copy per format) — so that adding a format is its module and a row here. To
train on it: a datamodule registered under the format's name (taking ``root`` and ``splits`` as the others do: the
shapes data read their copy through it) and its config. Listing the formats imports nothing: a row's module is
imported when it first reads, writes or finds; the other names below are imported from their module on first use, so
that ``vr convert --help`` imports no torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lazy_loader

from ...errors import ConfigError, close_matches

if TYPE_CHECKING:
    from ..annotations import AnnotationSet
    from .writing import ConversionReport


@dataclass(frozen=True)
class AnnotationFormat:
    """A row of ``FORMATS``: ``layout``, the files of the format in one line (``--help`` texts, errors), and
    ``module`` (relative to this package, or absolute), imported on first use, which defines:

    - ``read_dataset(source, image_set, image_dir, class_names) -> AnnotationSet``;
    - ``write_dataset(annotations, destination, image_set, copy_images, progress) -> ConversionReport``;
    - ``find_dataset(root) -> Path | None``: the path to read if ``root`` is, or holds, a data set of the format.
    """

    module: str
    layout: str

    def read(
        self,
        source: str | Path,
        image_set: str | None = "train",
        image_dir: str | Path | None = None,
        class_names: Sequence[str] | str | None = None,
    ) -> AnnotationSet:
        """The annotations at ``source``; ``image_set`` is a VOC image set or YOLO sub-folder (None: all),
        ``image_dir`` the images of a COCO file, ``class_names`` the label order (VOC, YOLO) or ``DISCOVER``."""
        return self._function("read_dataset")(Path(source), image_set, image_dir, class_names)

    def write(
        self,
        annotations: AnnotationSet,
        destination: str | Path,
        image_set: str | None = "train",
        copy_images: bool = True,
        progress: bool = False,
    ) -> ConversionReport:
        """The format's layout under ``destination``, the images hard-linked into it with ``copy_images``."""
        return self._function("write_dataset")(annotations, Path(destination), image_set, copy_images, progress)

    def find(self, root: str | Path) -> Path | None:
        """The path to read if ``root`` is, or holds, a data set of this format; else None."""
        return self._function("find_dataset")(Path(root))

    def _function(self, name: str) -> Callable[..., Any]:
        return getattr(importlib.import_module(self.module, __name__), name)


DISCOVER = "discover"  # class_names value: the sorted names found in the files (VOC), not a list given


FORMATS: dict[str, AnnotationFormat] = {
    "voc": AnnotationFormat(".voc", "Annotations/<id>.xml, JPEGImages/<id>.jpg, ImageSets/Main/<set>.txt"),
    "yolo": AnnotationFormat(".yolo", "images/<name>.jpg with labels/<name>.txt (class cx cy w h, normalised)"),
    # Last, as stats.detect_format takes the first row that finds a data set: an annotations/ folder also stands
    # beside other layouts (Ultralytics' copy of COCO has labels/ and annotations/instances_val2017.json).
    "coco": AnnotationFormat(".coco", "annotations/<name>.json (instances: images, annotations, categories), images/"),
}


def check_format(name: str) -> AnnotationFormat:
    """The row of ``name``; an unknown name is a ``ConfigError`` listing the formats (and the close one)."""
    if name not in FORMATS:
        hint = close_matches(name, FORMATS)
        raise ConfigError(
            f"unknown annotation format '{name}'; use one of {', '.join(FORMATS)}"
            + (f" (did you mean {hint[0]}?)" if hint else "")
        )
    return FORMATS[name]


__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "coco": (
            "check_unique_coco_ids",
            "coco_class_map",
            "coco_dict",
            "coco_index",
            "default_coco_image_dir",
            "load_json",
            "read_coco",
            "write_coco",
        ),
        "conversion": ("convert", "read_annotations"),
        "masks": ("load_mask", "save_mask_png", "voc_palette"),
        "voc": (
            "VOC_CLASSES",
            "VOC_LAYOUT",
            "check_class_names",
            "check_voc_root",
            "read_voc",
            "read_voc_xml",
            "voc_class_names",
            "voc_ids",
            "voc_xml",
            "write_voc",
        ),
        "writing": ("ConversionReport", "place_image"),
        "yolo": ("YOLO_LAYOUT", "read_yolo", "write_yolo", "yolo_class_names", "yolo_data_yaml", "yolo_lines"),
    },
)
