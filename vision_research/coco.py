"""COCO instances dicts (Lin et al. 2014), shared by the data readers and the metrics: unique ids, pycocotools'
index, and the ground-truth rows a detection target carries so that a detector is scored from its targets alone.

A ground-truth row is what the instances dict holds for one object, as float64 numbers
(``GROUND_TRUTH_COLUMNS``): the ``bbox`` x, y, width, height and the ``area`` (both rounded to ``decimals``),
``iscrowd`` and the contiguous class label. ``coco_box`` makes the numbers, for the instances dict of a data set
(``data.formats.coco_dict``) and for a target's rows alike, so the two give COCOeval the same ground truth.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import torch
from torch import Tensor

from .errors import DataError

GROUND_TRUTH_COLUMNS = ("x", "y", "width", "height", "area", "iscrowd", "label")
COORDINATE_DECIMALS = 3

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


def coco_box(
    box_xyxy: Sequence[float], area: float | None = None, decimals: int = COORDINATE_DECIMALS
) -> tuple[list[float], float]:
    """(``bbox`` [x, y, width, height], ``area``) of an xyxy pixel box as the instances dict stores them, rounded to
    ``decimals``; ``area`` defaults to the box's (COCO's own annotations give the segment's)."""
    x1, y1, x2, y2 = box_xyxy
    if area is None:
        area = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return [round(v, decimals) for v in (x1, y1, x2 - x1, y2 - y1)], round(area, decimals)


def ground_truth_rows(boxes_xyxy: Sequence, areas: Sequence, iscrowd: Sequence[bool], labels: Sequence[int]) -> Tensor:
    """The [M, 7] float64 ground-truth rows (``GROUND_TRUTH_COLUMNS``) of one image's M objects."""
    rows = []
    for box, area, crowd, label in zip(boxes_xyxy, areas, iscrowd, labels, strict=True):
        bbox, rounded_area = coco_box(box, area)
        rows.append([*bbox, rounded_area, float(crowd), float(label)])
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, len(GROUND_TRUTH_COLUMNS))


def instances_from_rows(
    image_ids: Sequence[int], rows: Tensor, counts: Sequence[int], category_ids: Sequence[int]
) -> dict:
    """The instances dict of images ``image_ids`` whose ground-truth rows are ``rows``, ``counts[i]`` of them for
    image i in order; labels become ``category_ids[label]``, annotation ids count from 1."""
    owners = [image for image, count in zip(image_ids, counts, strict=True) for _ in range(int(count))]
    annotations = []
    for k, (image_id, row) in enumerate(zip(owners, rows.tolist(), strict=True), start=1):
        label = int(row[6])
        if not 0 <= label < len(category_ids):
            raise DataError(
                f"ground-truth label {label} of image {image_id} has no category id ({len(category_ids)} classes)"
            )
        annotations.append(
            {
                "id": k,
                "image_id": image_id,
                "category_id": category_ids[label],
                "bbox": row[:4],
                "area": row[4],
                "iscrowd": int(row[5]),
            }
        )
    return {
        "images": [{"id": image_id} for image_id in image_ids],
        "annotations": annotations,
        "categories": [{"id": cid, "name": str(cid)} for cid in category_ids],
    }
