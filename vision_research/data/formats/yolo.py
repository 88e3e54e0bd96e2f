"""YOLO txt (Darknet / Ultralytics export): ``labels/<stem>.txt`` beside ``images/``, one ``class cx cy w h`` line
per object, normalised to [0, 1]; an empty or missing file = no objects (missing ones are counted in a
``DataWarning``; none found at all is a ``DataError`` naming the label folder); class names from ``classes.txt``,
``data.yaml`` or the caller. Sizes come from the image headers: all the images whose header cannot be read are
named in one ``DataError``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

from ...errors import ConfigError, DataError
from ..annotations import AnnotationSet, DataWarning, ImageRecord, ObjectAnnotation, sanitize_box
from ..images import IMAGE_SUFFIXES, image_size, scan_images
from . import FORMATS
from .writing import ConversionReport, place_image, progress_over, write_lines

YOLO_LAYOUT = FORMATS["yolo"].layout


def yolo_class_names(root: str | Path) -> list[str] | None:
    """Class names from ``classes.txt`` / ``obj.names`` or ``data.yaml`` (``names``) in ``root``, if any."""
    root = Path(root)
    for name in ("classes.txt", "obj.names"):
        if (root / name).is_file():
            return [line.strip() for line in (root / name).read_text().splitlines() if line.strip()]
    for name in ("data.yaml", "dataset.yaml"):
        if (root / name).is_file():
            from omegaconf import OmegaConf

            names = OmegaConf.to_container(OmegaConf.load(root / name)).get("names")
            if isinstance(names, dict):
                return [str(names[k]) for k in sorted(names)]
            if isinstance(names, list):
                return [str(n) for n in names]
    return None


def _parse_yolo_line(line: str, where: str, num_classes: int) -> tuple[int, tuple[float, float, float, float]]:
    parts = line.split()
    if len(parts) != 5:
        raise DataError(f"{where}: expected 'class cx cy w h' (5 values), got {len(parts)}: '{line.strip()}'")
    try:
        label, values = int(parts[0]), tuple(float(v) for v in parts[1:])
    except ValueError:
        raise DataError(f"{where}: '{line.strip()}' is not an integer class and four numbers") from None
    if not 0 <= label < num_classes:
        raise DataError(f"{where}: class {label} is outside 0..{num_classes - 1} ({num_classes} class names)")
    return label, values


def read_yolo(image_dir: str | Path, label_dir: str | Path, class_names: Sequence[str] | None = None) -> AnnotationSet:
    """YOLO txt labels for every image under ``image_dir`` (labels mirror the image paths under ``label_dir``)."""
    image_dir, label_dir = Path(image_dir), Path(label_dir)
    if not image_dir.is_dir():
        raise DataError(f"{image_dir}: image folder not found (expected {YOLO_LAYOUT}); nothing is downloaded")
    if isinstance(class_names, str):
        raise ConfigError(f"YOLO labels are class indices: list the class_names in order; got '{class_names}'")
    names = list(class_names) if class_names else yolo_class_names(label_dir.parent)
    if not names:
        raise DataError(
            f"{label_dir.parent}: no class names (classes.txt, obj.names or data.yaml with 'names'); "
            "pass class_names (data.class_names in the config)"
        )
    images = sorted(p for p in image_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    records, unlabelled = [], 0
    for path in images:
        relative = path.relative_to(image_dir)
        label_file = (label_dir / relative).with_suffix(".txt")
        try:
            width, height = image_size(path, referenced_by=str(label_file))
        except DataError:
            scan_images(images, max_pixels=None, hint="")  # every size comes from an image: all bad ones in one error
            raise
        record = ImageRecord(file_name=str(relative), width=width, height=height, source=str(label_file))
        unlabelled += not label_file.is_file()
        lines = label_file.read_text().splitlines() if label_file.is_file() else []
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{label_file}:{line_no}"
            label, (cx, cy, w, h) = _parse_yolo_line(line, where, len(names))
            pixels = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
            box = sanitize_box(pixels, width, height, f"{where} ('{names[label]}')")
            if box is not None:
                record.objects.append(ObjectAnnotation(box=box, category=names[label]))
        records.append(record)
    if not records:
        raise DataError(f"{image_dir}: no images found (expected {YOLO_LAYOUT})")
    _check_label_files(label_dir, image_dir, unlabelled, len(records))
    return AnnotationSet(records, names, image_dir=image_dir, source=str(label_dir))


def _check_label_files(label_dir: Path, image_dir: Path, unlabelled: int, total: int) -> None:
    """No label file for any image is a ``DataError`` (a wrong label folder); for some, a ``DataWarning``."""
    if unlabelled == total:
        nearest = next(p for p in label_dir.parents if p.is_dir())
        state = "holds none of their <name>.txt files" if label_dir.is_dir() else "does not exist"
        folders = sorted(p.name + "/" for p in nearest.iterdir() if p.is_dir())
        raise DataError(
            f"{label_dir}: no label file for any of the {total} images in {image_dir}; this label folder {state} "
            f"(expected {YOLO_LAYOUT}; folders in {nearest}: {', '.join(folders) or 'none'})"
        )
    if unlabelled:
        problem = f"{unlabelled} of {total} images in {image_dir} have no label file"
        warnings.warn(DataWarning(str(label_dir), problem, "read as images without objects"), stacklevel=3)


def yolo_lines(record: ImageRecord, annotations: AnnotationSet, decimals: int = 6) -> list[str]:
    """``class cx cy w h`` lines for the non-crowd objects of ``record``."""
    lines = []
    for obj in record.objects:
        if obj.iscrowd:
            continue
        x1, y1, x2, y2 = obj.box
        values = ((x1 + x2) / 2 / record.width, (y1 + y2) / 2 / record.height)
        values += ((x2 - x1) / record.width, (y2 - y1) / record.height)
        lines.append(f"{annotations.label(obj.category)} " + " ".join(f"{v:.{decimals}f}" for v in values))
    return lines


def write_yolo(
    annotations: AnnotationSet, root: str | Path, split: str | None = None, copy_images: bool = True, progress=False
) -> ConversionReport:
    """YOLO layout: ``images/[split/]``, ``labels/[split/]<stem>.txt``, ``classes.txt`` and ``data.yaml``."""
    root, report = Path(root), ConversionReport()
    sub = Path(split) if split else Path()
    for record in progress_over(annotations.images, "writing YOLO", progress):
        for obj in record.objects:
            if obj.iscrowd:
                report.note(report.skipped, "crowd region (YOLO has no crowd flag)", record.file_name)
            elif obj.difficult:
                report.note(report.repaired, "difficult flag dropped (YOLO has none)", record.file_name)
        lines = yolo_lines(record, annotations)
        write_lines((root / "labels" / sub / record.file_name).with_suffix(".txt"), lines)
        if copy_images:
            place_image(annotations.image_path(record), root / "images" / sub / record.file_name)
        report.images += 1
        report.objects += len(lines)
    write_lines(root / "classes.txt", annotations.categories)
    (root / "data.yaml").write_text(yolo_data_yaml(root, split, annotations.categories))
    return report


def yolo_data_yaml(root: Path, split: str | None, categories: Sequence[str]) -> str:
    """Ultralytics' ``data.yaml``: train / val / test name their ``images/<split>`` folders under ``root``.

    A missing train or val entry points at ``split`` (all of ``images/`` without one), as Ultralytics needs both.
    """
    present = {split} | {p.name for p in (root / "images").iterdir() if p.is_dir()} if split else set()
    lines = ["path: ."]
    for key in ("train", "val", "test"):
        if key in present:
            lines.append(f"{key}: images/{key}")
        elif key != "test":
            lines.append(f"{key}: images/{split or ''}")
    lines += ["names:", *(f"  {i}: {json.dumps(n)}" for i, n in enumerate(categories))]
    return "".join(f"{line}\n" for line in lines)


def read_dataset(
    source: Path, image_set: str | None, image_dir: Path | None, class_names: Sequence[str] | None
) -> AnnotationSet:
    """``FORMATS["yolo"].read``: the YOLO root ``source``, its sub-folder ``image_set`` if images/ has one (else all
    of it); the images in ``image_dir`` if given; the class names from ``classes.txt`` / ``data.yaml`` if not given."""
    split = Path(image_set) if image_set and (source / "images" / image_set).is_dir() else Path()
    names = class_names or yolo_class_names(source)
    return read_yolo(Path(image_dir or source / "images" / split), source / "labels" / split, names)


def write_dataset(
    annotations: AnnotationSet, destination: Path, image_set: str | None, copy_images: bool, progress: bool
) -> ConversionReport:
    """``FORMATS["yolo"].write``: in the sub-folders ``image_set`` of images/ and labels/ (None: none)."""
    return write_yolo(annotations, destination, image_set, copy_images, progress)


def find_dataset(root: Path) -> Path | None:
    """``FORMATS["yolo"].find``: ``root`` if it holds labels/."""
    return root if (root / "labels").is_dir() else None
