"""Pascal VOC XML (Everingham et al. 2010): ``Annotations/<id>.xml`` with 1-based inclusive pixel corners,
``JPEGImages/``, ``ImageSets/Main/<set>.txt``. ``difficult`` objects (0 / 1, no / yes, false / true) are kept and
flagged. Corners map to our frame as (xmin − 1, ymin − 1, xmax, ymax). Unknown class names are an error suggesting
the close VOC name, unless the names are discovered (``class_names="discover"``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path

from ...errors import ConfigError, DataError
from ..annotations import AnnotationSet, ImageRecord, ObjectAnnotation, sanitize_box
from ..images import IMAGE_SUFFIXES, image_size
from . import DISCOVER, FORMATS
from .writing import ConversionReport, place_image, progress_over, write_lines

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
VOC_LAYOUT = FORMATS["voc"].layout
VOC_FLAGS = {"": False, "0": False, "no": False, "false": False, "1": True, "yes": True, "true": True}


def _voc_text(node: ET.Element, tag: str, path: Path, what: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise DataError(f"{path}: {what} has no <{tag}>")
    return child.text.strip()


def _voc_number(node: ET.Element, tag: str, path: Path, what: str) -> float:
    text = _voc_text(node, tag, path, what)
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{path}: {what} <{tag}> is '{text}', not a number") from None


def _voc_flag(node: ET.Element, tag: str, path: Path, what: str) -> bool:
    """The flag ``<tag>`` of ``node``: 0 / 1, no / yes or false / true (any case); absent or empty is false."""
    text = node.findtext(tag, default="").strip()
    if text.lower() not in VOC_FLAGS:
        raise DataError(f"{path}: {what} <{tag}> is '{text}'; a flag is 0 / 1, no / yes or false / true")
    return VOC_FLAGS[text.lower()]


def read_voc_xml(path: str | Path, image_dir: str | Path | None = None) -> ImageRecord:
    """One VOC annotation file; a missing or zero ``<size>`` is read from the image header."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise DataError(f"{path}: malformed XML ({err})") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read the annotation ({err})") from None
    filename = root.findtext("filename", default="").strip() or _find_image_name(path.stem, image_dir, path)
    size = root.find("size")
    width = (
        int(_voc_number(size, "width", path, "<size>")) if size is not None and size.find("width") is not None else 0
    )
    height = (
        int(_voc_number(size, "height", path, "<size>")) if size is not None and size.find("height") is not None else 0
    )
    if (width <= 0 or height <= 0) and image_dir is not None:
        width, height = image_size(Path(image_dir) / filename, referenced_by=str(path))
    record = ImageRecord(file_name=filename, width=width, height=height, source=str(path))
    for k, obj in enumerate(root.iter("object")):
        name = _voc_text(obj, "name", path, f"object {k}")
        what = f"object {k} ('{name}')"
        box_node = obj.find("bndbox")
        if box_node is None:
            raise DataError(f"{path}: {what} has no <bndbox>")
        corners = [_voc_number(box_node, t, path, what) for t in ("xmin", "ymin", "xmax", "ymax")]
        difficult = _voc_flag(obj, "difficult", path, what)
        box = sanitize_box((corners[0] - 1, corners[1] - 1, corners[2], corners[3]), width, height, f"{path}: {what}")
        if box is not None:
            record.objects.append(ObjectAnnotation(box=box, category=name, difficult=difficult))
    return record


def _find_image_name(stem: str, image_dir: str | Path | None, source: Path) -> str:
    if image_dir is not None:
        for suffix in IMAGE_SUFFIXES:
            if (Path(image_dir) / (stem + suffix)).is_file():
                return stem + suffix
    raise DataError(f"{source}: no <filename>, and no image named {stem}.* in {image_dir}")


def voc_ids(root: str | Path, image_set: str | None, kind: str = "Main") -> list[str]:
    """The ids listed in ``ImageSets/<kind>/<image_set>.txt`` (``None``: every annotation file)."""
    root = Path(root)
    if image_set is None:
        folder = root / ("Annotations" if kind == "Main" else "SegmentationClass")
        return sorted(p.stem for p in folder.glob("*.xml" if kind == "Main" else "*.png"))
    list_file = root / "ImageSets" / kind / f"{image_set}.txt"
    if not list_file.is_file():
        available = sorted(p.stem for p in (root / "ImageSets" / kind).glob("*.txt") if "_" not in p.stem)
        raise DataError(
            f"{list_file}: image set '{image_set}' not found"
            + (f"; the sets here are: {', '.join(available)}" if available else "")
        )
    # Lines are "<id>" or, in per-class lists, "<id> <±1>".
    return [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]


def check_voc_root(root: str | Path) -> Path:
    root = Path(root)
    if not (root / "Annotations").is_dir():
        raise DataError(f"{root}: not a Pascal VOC folder (expected {VOC_LAYOUT}); nothing is downloaded")
    return root


def read_voc(
    root: str | Path, image_set: str | None = "train", class_names: Sequence[str] | str | None = None
) -> AnnotationSet:
    """The VOC detection annotations of ``image_set`` (``None``: all files in Annotations/).

    ``class_names`` fixes the label order, or is ``"discover"``; by default the 20 VOC classes (see
    ``voc_class_names``).
    """
    root = check_voc_root(root)
    image_dir = root / "JPEGImages"
    records = []
    for image_id in voc_ids(root, image_set):
        xml = root / "Annotations" / f"{image_id}.xml"
        if not xml.is_file():
            raise DataError(f"{xml}: listed in the image set '{image_set}' but the annotation file is missing")
        records.append(read_voc_xml(xml, image_dir))
    return AnnotationSet(records, voc_class_names(records, class_names), image_dir=image_dir, source=str(root))


def check_class_names(class_names: Sequence[str] | str | None) -> list[str] | str | None:
    """``class_names`` as a list, ``"discover"`` or None; any other single string is a ``ConfigError``."""
    if isinstance(class_names, str):
        if class_names != DISCOVER:
            raise ConfigError(
                f"class_names must be a list of names or '{DISCOVER}' (the sorted names found); got '{class_names}'"
            )
        return class_names
    return list(class_names) if class_names else None


def voc_class_names(records: Iterable[ImageRecord], class_names: Sequence[str] | str | None = None) -> list[str]:
    """The label order of VOC ``records``: ``class_names`` as given, or the sorted names found (``"discover"``).

    By default VOC's 20 classes, unless no name found is one of them (then the sorted names found): a
    non-VOC name among VOC ones (a typo such as 'persn') is then an unknown class, a ``DataError`` naming
    its XML file, the object and the close VOC names.
    """
    names = check_class_names(class_names)
    if isinstance(names, list):
        return names
    found = {obj.category for r in records for obj in r.objects}
    return sorted(found) if names == DISCOVER or (found and found.isdisjoint(VOC_CLASSES)) else list(VOC_CLASSES)


def _voc_corners(box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    return round(x1) + 1, round(y1) + 1, round(x2), round(y2)


def voc_xml(record: ImageRecord) -> ET.ElementTree:
    """A VOC annotation for ``record`` with 1-based integer corners."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC"
    ET.SubElement(root, "filename").text = Path(record.file_name).name
    size = ET.SubElement(root, "size")
    for tag, value in (("width", record.width), ("height", record.height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for obj in record.objects:
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = obj.category
        ET.SubElement(node, "pose").text = "Unspecified"
        ET.SubElement(node, "truncated").text = "0"
        ET.SubElement(node, "difficult").text = str(int(obj.difficult))
        box = ET.SubElement(node, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), _voc_corners(obj.box), strict=True):
            ET.SubElement(box, tag).text = str(value)
    tree = ET.ElementTree(root)
    ET.indent(tree)
    return tree


def write_voc(
    annotations: AnnotationSet, root: str | Path, image_set: str = "train", copy_images: bool = True, progress=False
) -> ConversionReport:
    """VOC layout under ``root``: one XML per image, the image set list, images hard-linked into JPEGImages/."""
    root, report = Path(root), ConversionReport()
    ids = []
    for record in progress_over(annotations.images, "writing VOC", progress):
        crowd = [obj for obj in record.objects if obj.iscrowd]
        for _ in crowd:
            report.note(report.skipped, "crowd region (VOC has no crowd flag)", record.file_name)
        kept = ImageRecord(record.file_name, record.width, record.height, [o for o in record.objects if not o.iscrowd])
        kept.file_name = Path(record.file_name).name
        stem = Path(kept.file_name).stem
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        voc_xml(kept).write(root / "Annotations" / f"{stem}.xml", encoding="unicode")
        if copy_images:
            place_image(annotations.image_path(record), root / "JPEGImages" / kept.file_name)
        ids.append(stem)
        report.images += 1
        report.objects += len(kept.objects)
    write_lines(root / "ImageSets" / "Main" / f"{image_set}.txt", ids)
    return report


def read_dataset(
    source: Path, image_set: str | None, image_dir: Path | None, class_names: Sequence[str] | str | None
) -> AnnotationSet:
    """``FORMATS["voc"].read``: the VOC root ``source`` (its images are in JPEGImages/, ``image_dir`` is unused)."""
    return read_voc(source, image_set, class_names)


def write_dataset(
    annotations: AnnotationSet, destination: Path, image_set: str | None, copy_images: bool, progress: bool
) -> ConversionReport:
    """``FORMATS["voc"].write``: the image set ``all`` when there is none."""
    return write_voc(annotations, destination, image_set or "all", copy_images, progress)


def find_dataset(root: Path) -> Path | None:
    """``FORMATS["voc"].find``: ``root`` if it holds Annotations/."""
    return root if (root / "Annotations").is_dir() else None
