"""Annotation formats: Pascal VOC XML, COCO instances JSON and YOLO txt — read, validate, write, convert.

Every reader returns an :class:`~vision_research.data.annotations.AnnotationSet` and every writer takes
one, so any pair converts through it (``convert``; the ``vr convert`` command):

- **VOC** (Everingham et al. 2010): ``Annotations/<id>.xml`` with 1-based inclusive pixel corners,
  ``JPEGImages/``, ``ImageSets/Main/<set>.txt``; segmentation in ``SegmentationClass/<id>.png`` (class
  indices, 255 = ignore) listed in ``ImageSets/Segmentation/<set>.txt``. ``difficult`` objects are kept
  and flagged. Corners map to our frame as (xmin − 1, ymin − 1, xmax, ymax).
- **COCO** (Lin et al. 2014): one instances JSON indexed with pycocotools; boxes xywh in pixels,
  category ids with gaps (mapped to contiguous labels and back through ``AnnotationSet.category_ids``),
  polygons or RLE for masks, ``iscrowd`` regions kept and flagged; image, annotation and category ids must
  be unique (pycocotools would silently merge entries sharing one).
- **YOLO** (Darknet / Ultralytics export): ``labels/<stem>.txt`` beside ``images/``, one
  ``class cx cy w h`` line per object, normalised to [0, 1]; an empty or missing file = no objects (missing
  ones are counted in a ``DataWarning``; none found at all is a ``DataError`` naming the label folder); class
  names from ``classes.txt``, ``data.yaml`` or the caller. Sizes come from the image headers: all the images
  whose header cannot be read are named in one ``DataError``.

Malformed files raise ``DataError`` naming the file (and line or object); repairable boxes are clipped
or dropped with a ``DataWarning`` by the rule in ``annotations.sanitize_box``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import shutil
import warnings
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConfigError, DataError, close_matches
from .annotations import AnnotationSet, DataWarning, ImageRecord, ObjectAnnotation, sanitize_box
from .images import IMAGE_SUFFIXES, image_size, scan_images

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
FORMATS = ("voc", "coco", "yolo")
DISCOVER = "discover"  # class_names value: the sorted names found in the VOC files
VOC_LAYOUT = "Annotations/<id>.xml, JPEGImages/<id>.jpg, ImageSets/Main/<set>.txt"
YOLO_LAYOUT = "images/<name>.jpg with labels/<name>.txt (class cx cy w h, normalised)"


# ----------------------------------------------------------------------------------------------- VOC


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
        what = f"object {k}"
        name = _voc_text(obj, "name", path, what)
        box_node = obj.find("bndbox")
        if box_node is None:
            raise DataError(f"{path}: {what} ('{name}') has no <bndbox>")
        corners = [_voc_number(box_node, t, path, f"{what} ('{name}')") for t in ("xmin", "ymin", "xmax", "ymax")]
        box = sanitize_box(
            (corners[0] - 1, corners[1] - 1, corners[2], corners[3]), width, height, f"{path}: {what} ('{name}')"
        )
        if box is not None:
            difficult = obj.findtext("difficult", default="0").strip() in ("1", "true", "True")
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


# ---------------------------------------------------------------------------------------------- COCO


def load_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with 'images', 'annotations' and 'categories'")
    return data


def _check_coco(data: dict, path: Path) -> None:
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: the COCO key '{key}' is missing or not a list")
    for n, image in enumerate(data["images"]):
        missing = [k for k in ("id", "file_name", "width", "height") if k not in image]
        if missing:
            raise DataError(f"{path}: images[{n}] lacks {', '.join(missing)}")
    for n, cat in enumerate(data["categories"]):
        if "id" not in cat or "name" not in cat:
            raise DataError(f"{path}: categories[{n}] lacks 'id' or 'name'")
    check_unique_coco_ids(data, str(path))
    image_ids = {image["id"] for image in data["images"]}
    category_ids = {cat["id"] for cat in data["categories"]}
    for n, ann in enumerate(data["annotations"]):
        where = f"{path}: annotations[{n}] (id {ann.get('id')})"
        if "id" not in ann:
            raise DataError(f"{where} has no 'id'")
        if ann.get("image_id") not in image_ids:
            raise DataError(f"{where} refers to image_id {ann.get('image_id')}, which is not in 'images'")
        if ann.get("category_id") not in category_ids:
            raise DataError(
                f"{where} has category_id {ann.get('category_id')}, which is not in 'categories' "
                f"(known ids: {sorted(category_ids)})"
            )
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, int | float) for v in bbox):
            raise DataError(f"{where}: 'bbox' must be [x, y, width, height] numbers; got {bbox!r}")


_COCO_ID_KINDS = {
    "images": ("image", "file_name"),
    "annotations": ("annotation", "image_id"),
    "categories": ("category", "name"),
}


def check_unique_coco_ids(data: dict, where: str) -> None:
    """``DataError`` naming the first id shared by two images, annotations or categories of ``data``.

    pycocotools indexes each list by id, so a repeated id silently drops one entry and merges its boxes
    into the other's (reading) or loses and doubles ground-truth boxes (evaluation).
    """
    for key, (kind, label) in _COCO_ID_KINDS.items():
        first_of: dict = {}
        for n, entry in enumerate(data.get(key, [])):
            m = first_of.setdefault(entry.get("id"), n)
            if m != n and entry.get("id") is not None:
                first = data[key][m]
                raise DataError(
                    f"{where}: {kind} id {entry['id']!r} is used twice, by {key}[{m}] ({label} {first.get(label)!r}) "
                    f"and {key}[{n}] ({label} {entry.get(label)!r}); give every {kind} its own id"
                )


def coco_index(data: dict):  # -> pycocotools.coco.COCO
    """pycocotools' index over an already loaded instances dict, without its console chatter."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def default_coco_image_dir(json_path: Path) -> Path:
    """``<root>/images`` or ``<root>/<split>`` (``instances_train2017.json`` → ``train2017``) beside annotations/."""
    root = json_path.parent.parent if json_path.parent.name == "annotations" else json_path.parent
    split = json_path.stem.removeprefix("instances_")
    for candidate in (root / "images" / split, root / split, root / "images"):
        if candidate.is_dir():
            return candidate
    raise DataError(f"{json_path}: no image folder found at {root / 'images'} or {root / split}; pass image_dir")


def read_coco(json_path: str | Path, image_dir: str | Path | None = None) -> AnnotationSet:
    """A COCO instances file; labels follow the sorted category ids."""
    json_path = Path(json_path)
    data = load_json(json_path)
    _check_coco(data, json_path)
    image_dir = Path(image_dir) if image_dir is not None else default_coco_image_dir(json_path)
    coco = coco_index(data)
    categories = sorted(data["categories"], key=lambda c: c["id"])
    name_of = {c["id"]: str(c["name"]) for c in categories}
    records = []
    for image_id in sorted(coco.imgs):
        info = coco.imgs[image_id]
        record = ImageRecord(
            file_name=info["file_name"],
            width=int(info["width"]),
            height=int(info["height"]),
            image_id=image_id,
            source=f"{json_path} (image id {image_id})",
        )
        for ann in coco.imgToAnns.get(image_id, []):
            x, y, w, h = ann["bbox"]
            where = f"{json_path}: annotation id {ann.get('id')} of image {info['file_name']}"
            box = sanitize_box((x, y, x + w, y + h), record.width, record.height, where)
            if box is not None:
                record.objects.append(
                    ObjectAnnotation(
                        box=box,
                        category=name_of[ann["category_id"]],
                        difficult=bool(ann.get("difficult", 0)),
                        iscrowd=bool(ann.get("iscrowd", 0)),
                        segmentation=ann.get("segmentation") or None,
                        area=ann.get("area"),
                    )
                )
        records.append(record)
    return AnnotationSet(
        records,
        [name_of[c["id"]] for c in categories],
        image_dir=image_dir,
        category_ids=[c["id"] for c in categories],
        source=str(json_path),
    )


def coco_dict(annotations: AnnotationSet, decimals: int = 3) -> dict:
    """The COCO instances dict of ``annotations`` (``difficult`` kept as an extra key pycocotools ignores)."""
    images, anns = [], []
    for record in annotations.images:
        images.append(
            {"id": record.image_id, "file_name": record.file_name, "width": record.width, "height": record.height}
        )
        for obj in record.objects:
            x1, y1, x2, y2 = obj.box
            ann = {
                "id": len(anns) + 1,
                "image_id": record.image_id,
                "category_id": annotations.category_ids[annotations.label(obj.category)],
                "bbox": [round(v, decimals) for v in (x1, y1, x2 - x1, y2 - y1)],
                "area": round(obj.area if obj.area is not None else obj.box_area, decimals),
                "iscrowd": int(obj.iscrowd),
            }
            if obj.segmentation is not None:
                ann["segmentation"] = obj.segmentation
            if obj.difficult:
                ann["difficult"] = 1
            anns.append(ann)
    categories = [
        {"id": cid, "name": name, "supercategory": "object"}
        for cid, name in zip(annotations.category_ids, annotations.categories, strict=True)
    ]
    data = {"images": images, "annotations": anns, "categories": categories}
    check_unique_coco_ids(data, annotations.source)
    return data


def coco_class_map(record: ImageRecord, annotations: AnnotationSet) -> np.ndarray:
    """A class map [H, W] uint8 from the objects' COCO polygons / RLE: 0 background, label + 1 per object
    (smaller objects painted over larger ones), crowd regions 255 (ignore)."""
    from pycocotools import mask as mask_utils

    height, width = record.height, record.width
    class_map = np.zeros((height, width), dtype=np.uint8)
    if annotations.num_classes > 254:
        raise DataError(f"{annotations.source}: {annotations.num_classes} classes do not fit a uint8 class map")
    for k, obj in sorted(enumerate(record.objects), key=lambda item: -item[1].box_area):
        if obj.segmentation is None:
            raise DataError(f"{record.source}: object {k} ('{obj.category}') has no segmentation (polygons or RLE)")
        segmentation = obj.segmentation
        if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
            segmentation = mask_utils.frPyObjects(segmentation, height, width)  # uncompressed RLE
        elif isinstance(segmentation, list):
            segmentation = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        pixels = mask_utils.decode(segmentation).astype(bool)
        class_map[pixels] = 255 if obj.iscrowd else annotations.label(obj.category) + 1
    return class_map


# ---------------------------------------------------------------------------------------------- YOLO


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
    scan_images(images, max_pixels=None, hint="")  # every size is read from its image: all bad ones in one error
    records, unlabelled = [], 0
    for path in images:
        relative = path.relative_to(image_dir)
        label_file = (label_dir / relative).with_suffix(".txt")
        width, height = image_size(path, referenced_by=str(label_file))
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


# ----------------------------------------------------------------------------------------- Masks (VOC)


@functools.cache
def voc_palette() -> list[int]:
    """The Pascal VOC colour map (bit-interleaved class index; 255 = ignore drawn in cream)."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    palette[255 * 3 : 256 * 3] = [224, 224, 192]
    return palette


def save_mask_png(mask: np.ndarray, path: str | Path) -> None:
    """A class-index mask as a palette PNG (values are the class indices; viewers show VOC colours)."""
    if mask.ndim != 2 or mask.min(initial=0) < 0 or mask.max(initial=0) > 255:
        raise DataError(f"{path}: a mask must be a 2-D array of class indices 0..255")
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(list(voc_palette()))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def load_mask(path: str | Path, num_classes: int, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """A class-index mask [H, W] uint8; values other than 0..num_classes-1 and 255 (ignore) are a ``DataError``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: mask file not found")
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L", "I", "I;16"):
                raise DataError(f"{path}: a mask must be a palette or grayscale PNG of class indices; got {image.mode}")
            mask = np.asarray(image)
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: cannot read the mask ({err})") from None
    if expected_size is not None and (mask.shape[1], mask.shape[0]) != tuple(expected_size):
        w, h = expected_size
        raise DataError(f"{path}: the mask is {mask.shape[1]}×{mask.shape[0]} but its image is {w}×{h}")
    values = np.unique(mask)
    bad = values[((values < 0) | (values >= num_classes)) & (values != 255)]
    if bad.size:
        raise DataError(
            f"{path}: class indices {bad.tolist()[:10]} are outside 0..{num_classes - 1} ({num_classes} classes; "
            "255 = ignore); set data.num_classes or data.class_names to cover them"
        )
    return mask.astype(np.uint8)


# ----------------------------------------------------------------------------------------- Conversion


@dataclass
class ConversionReport:
    """What a conversion wrote and what it skipped or repaired, and why."""

    images: int = 0
    objects: int = 0
    skipped: Counter = field(default_factory=Counter)
    repaired: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def note(self, counter: Counter, reason: str, example: str) -> None:
        counter[reason] += 1
        self.examples.setdefault(reason, example)

    def summary(self) -> str:
        lines = [f"converted {self.images} images, {self.objects} objects"]
        for title, counter in (("skipped", self.skipped), ("repaired", self.repaired)):
            for reason, count in counter.most_common():
                lines.append(f"  {title} {count}: {reason} (e.g. {self.examples[reason]})")
        return "\n".join(lines)


def place_image(source: Path, destination: Path) -> None:
    """Hard-link ``source`` at ``destination`` (a copy across file systems); existing files are kept."""
    if destination.exists():
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def _progress(items: Sequence, description: str, show: bool) -> Iterable:
    if not show:
        return items
    from rich.progress import track

    return track(items, description=description, transient=True)


def write_voc(
    annotations: AnnotationSet, root: str | Path, image_set: str = "train", copy_images: bool = True, progress=False
) -> ConversionReport:
    """VOC layout under ``root``: one XML per image, the image set list, images hard-linked into JPEGImages/."""
    root, report = Path(root), ConversionReport()
    ids = []
    for record in _progress(annotations.images, "writing VOC", progress):
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
    _write_lines(root / "ImageSets" / "Main" / f"{image_set}.txt", ids)
    return report


def write_coco(
    annotations: AnnotationSet, json_path: str | Path, image_dir: str | Path | None = None, progress=False
) -> ConversionReport:
    """A COCO instances JSON; with ``image_dir`` the images are hard-linked there under their file names."""
    json_path, report = Path(json_path), ConversionReport()
    if image_dir is not None:
        for record in _progress(annotations.images, "writing COCO images", progress):
            place_image(annotations.image_path(record), Path(image_dir) / record.file_name)
    data = coco_dict(annotations)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(data))
    report.images, report.objects = len(data["images"]), len(data["annotations"])
    return report


def write_yolo(
    annotations: AnnotationSet, root: str | Path, split: str | None = None, copy_images: bool = True, progress=False
) -> ConversionReport:
    """YOLO layout: ``images/[split/]``, ``labels/[split/]<stem>.txt``, ``classes.txt`` and ``data.yaml``."""
    root, report = Path(root), ConversionReport()
    sub = Path(split) if split else Path()
    for record in _progress(annotations.images, "writing YOLO", progress):
        for obj in record.objects:
            if obj.iscrowd:
                report.note(report.skipped, "crowd region (YOLO has no crowd flag)", record.file_name)
            elif obj.difficult:
                report.note(report.repaired, "difficult flag dropped (YOLO has none)", record.file_name)
        lines = yolo_lines(record, annotations)
        _write_lines((root / "labels" / sub / record.file_name).with_suffix(".txt"), lines)
        if copy_images:
            place_image(annotations.image_path(record), root / "images" / sub / record.file_name)
        report.images += 1
        report.objects += len(lines)
    _write_lines(root / "classes.txt", annotations.categories)
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


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


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
