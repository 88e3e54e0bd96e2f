"""COCO instances JSON (Lin et al. 2014), indexed with pycocotools: boxes xywh in pixels, category ids with gaps
(mapped to contiguous labels and back through ``AnnotationSet.category_ids``), polygons or RLE for masks (checked
against their image when read), ``iscrowd`` regions kept and flagged; image, annotation and category ids must be
unique (pycocotools would silently merge entries sharing one).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...coco import check_unique_coco_ids, coco_box, coco_index
from ...errors import ConfigError, DataError
from ..annotations import AnnotationSet, ImageRecord, ObjectAnnotation, sanitize_box
from .writing import ConversionReport, place_image, progress_over


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
            obj = _coco_object(ann, record, name_of[ann["category_id"]], json_path)
            if obj is not None:
                record.objects.append(obj)
        records.append(record)
    return AnnotationSet(
        records,
        [name_of[c["id"]] for c in categories],
        image_dir=image_dir,
        category_ids=[c["id"] for c in categories],
        source=str(json_path),
    )


def _coco_object(ann: dict, record: ImageRecord, category: str, json_path: Path) -> ObjectAnnotation | None:
    """The object of annotation ``ann`` of ``record``; None when its box is degenerate (dropped with a warning)."""
    where = f"{json_path}: annotation id {ann.get('id')} of image {record.file_name}"
    segmentation = _check_segmentation(ann.get("segmentation") or None, record.height, record.width, where)
    x, y, w, h = ann["bbox"]
    box = sanitize_box((x, y, x + w, y + h), record.width, record.height, where)
    if box is None:
        return None
    return ObjectAnnotation(
        box=box,
        category=category,
        difficult=bool(ann.get("difficult", 0)),
        iscrowd=bool(ann.get("iscrowd", 0)),
        segmentation=segmentation,
        area=ann.get("area"),
    )


def _check_segmentation(segmentation: Any, height: int, width: int, where: str) -> Any:
    """``segmentation`` (None, COCO polygons or RLE) if it describes a mask of the ``height``×``width`` image, else a
    ``DataError`` naming ``where``. Checked when read: later, a mask of another size fails in a loader worker, RLE
    counts short of the image decode to memory pycocotools never wrote, and its own errors name no annotation."""
    if isinstance(segmentation, dict):
        _check_rle(segmentation, height, width, where)
    elif isinstance(segmentation, list):
        _check_polygons(segmentation, where)
    elif segmentation is not None:
        raise DataError(
            f"{where}: 'segmentation' must be polygons [[x1, y1, x2, y2, ...], ...] or RLE {{size, counts}}; "
            f"got {segmentation!r}"
        )
    return segmentation


def _check_polygons(polygons: list, where: str) -> None:
    for k, polygon in enumerate(polygons):
        if not isinstance(polygon, list) or not all(_finite_number(v) for v in polygon):
            raise DataError(f"{where}: polygon {k} is not a list of x, y numbers; got {polygon!r}")
        if len(polygon) < 6 or len(polygon) % 2:
            raise DataError(
                f"{where}: polygon {k} has {len(polygon)} values; a polygon needs at least 3 points (6 values) "
                "and an even count"
            )


def _finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_rle(rle: dict, height: int, width: int, where: str) -> None:
    size = rle.get("size")
    if size != [height, width]:
        raise DataError(f"{where}: RLE size {size!r} differs from the image's [{height}, {width}] (height, width)")
    runs = _rle_runs(rle.get("counts"), where)
    if sum(runs) != height * width:
        raise DataError(
            f"{where}: RLE counts cover {sum(runs)} pixels but the {width}×{height} image has {height * width}"
        )


def _rle_runs(counts: Any, where: str) -> list[int]:
    """The run lengths of RLE ``counts``: a list (uncompressed) or COCO's compressed string."""
    if isinstance(counts, str):
        try:
            runs = _compressed_rle_runs(counts)
        except ValueError as err:
            raise DataError(f"{where}: malformed compressed RLE counts ({err})") from None
    elif isinstance(counts, list) and all(isinstance(n, int) and not isinstance(n, bool) for n in counts):
        runs = counts
    else:
        raise DataError(f"{where}: RLE counts must be a list of run lengths or a compressed string; got {counts!r}")
    if any(n < 0 for n in runs):
        raise DataError(f"{where}: RLE counts hold a negative run length")
    return runs


def _compressed_rle_runs(counts: str) -> list[int]:
    """The run lengths of a compressed RLE string, read as pycocotools' ``rleFrString`` does (a character '0'..'o'
    carries 5 bits and a continuation bit, the last one of a number its sign; from the fourth run on, a run is
    stored as its difference from the run two before); a ``ValueError`` says what is malformed."""
    runs: list[int] = []
    value = shift = 0
    for char in counts:
        code = ord(char) - 48
        if not 0 <= code < 64:
            raise ValueError(f"character {char!r} is outside '0'..'o'")
        value |= (code & 0x1F) << shift
        shift += 5
        if code & 0x20:  # more characters follow in this number
            continue
        if code & 0x10:  # negative
            value -= 1 << shift
        runs.append(value + (runs[-2] if len(runs) > 2 else 0))
        value = shift = 0
    if shift:
        raise ValueError("the string ends inside a number")
    return runs


def coco_dict(annotations: AnnotationSet, decimals: int = 3) -> dict:
    """The COCO instances dict of ``annotations`` (``difficult`` kept as an extra key pycocotools ignores)."""
    images, anns = [], []
    for record in annotations.images:
        images.append(
            {"id": record.image_id, "file_name": record.file_name, "width": record.width, "height": record.height}
        )
        for obj in record.objects:
            bbox, area = coco_box(obj.box, obj.area, decimals)
            ann = {
                "id": len(anns) + 1,
                "image_id": record.image_id,
                "category_id": annotations.category_ids[annotations.label(obj.category)],
                "bbox": bbox,
                "area": area,
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


def write_coco(
    annotations: AnnotationSet, json_path: str | Path, image_dir: str | Path | None = None, progress=False
) -> ConversionReport:
    """A COCO instances JSON; with ``image_dir`` the images are hard-linked there under their file names."""
    json_path, report = Path(json_path), ConversionReport()
    if image_dir is not None:
        for record in progress_over(annotations.images, "writing COCO images", progress):
            place_image(annotations.image_path(record), Path(image_dir) / record.file_name)
    data = coco_dict(annotations)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(data))
    report.images, report.objects = len(data["images"]), len(data["annotations"])
    return report


def read_dataset(
    source: Path, image_set: str | None, image_dir: Path | None, class_names: Sequence[str] | str | None
) -> AnnotationSet:
    """``FORMATS["coco"].read``: the instances file ``source`` (its own image set and class names)."""
    return read_coco(source, image_dir)


def write_dataset(
    annotations: AnnotationSet, destination: Path, image_set: str | None, copy_images: bool, progress: bool
) -> ConversionReport:
    """``FORMATS["coco"].write``: ``annotations/instances_<image_set or all>.json``, images in ``images/``."""
    json_path = destination / "annotations" / f"instances_{image_set or 'all'}.json"
    return write_coco(annotations, json_path, destination / "images" if copy_images else None, progress)


def find_dataset(root: Path) -> Path | None:
    """``FORMATS["coco"].find``: ``root`` if it is a JSON file, else the one JSON file of its annotations/ (several
    are a ``ConfigError``: which one is meant?)."""
    if root.suffix == ".json":
        return root
    jsons = sorted((root / "annotations").glob("*.json")) if (root / "annotations").is_dir() else []
    if len(jsons) > 1:
        raise ConfigError(f"{root}: several COCO files ({', '.join(j.name for j in jsons)}); pass one of them")
    return jsons[0] if jsons else None
