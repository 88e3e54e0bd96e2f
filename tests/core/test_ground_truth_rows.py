"""The ground truth a detection target carries (``vision_research.coco`` rows) scores exactly as the annotation file.

COCO mAP is computed from the batches alone: each target holds its image's objects as the instances dict does.
Here the instances dict rebuilt from those rows is checked against the real one: on a COCO file written here with
crowd regions, segment areas and gaps in the category ids, and on the real COCO128 annotations when
``../shared/data/coco128-train`` is beside the repository (skipped otherwise).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from vision_research.coco import ground_truth_rows, instances_from_rows
from vision_research.data.formats import load_json, read_coco
from vision_research.metrics import coco_evaluate

COCO128 = Path(__file__).resolve().parents[3] / "shared" / "data" / "coco128-train"


def rebuilt_ground_truth(json_path: Path) -> tuple[dict, dict]:
    """(the file's instances dict, the one rebuilt from each image's ground-truth rows) over the same images."""
    raw = load_json(json_path)
    annotations = read_coco(json_path, json_path.parent)
    ids = [record.image_id for record in annotations.images]
    rows = [
        ground_truth_rows(
            [o.box for o in record.objects],
            [o.area for o in record.objects],
            [o.iscrowd for o in record.objects],
            [annotations.label(o.category) for o in record.objects],
        )
        for record in annotations.images
    ]
    built = instances_from_rows(ids, torch.cat(rows), [len(r) for r in rows], list(annotations.category_ids))
    return raw, built


def jittered_detections(ground_truth: dict, seed: int = 0) -> list[dict]:
    """Two detections near every box (±15 % of its size), random scores: every IoU threshold matters."""
    rng = random.Random(seed)
    detections = []
    for ann in ground_truth["annotations"]:
        x, y, w, h = ann["bbox"]
        for _ in range(2):
            dx, dy, dw, dh = (rng.uniform(-0.15, 0.15) * s for s in (w, h, w, h))
            bbox = [x + dx, y + dy, max(1.0, w + dw), max(1.0, h + dh)]
            detections.append(
                {"image_id": ann["image_id"], "category_id": ann["category_id"], "bbox": bbox, "score": rng.random()}
            )
    return detections


def assert_same_scores(raw: dict, built: dict) -> None:
    assert len(built["annotations"]) == len(raw["annotations"])
    detections = jittered_detections(raw)
    for backend in ("pycocotools", "faster_coco_eval"):
        assert coco_evaluate(built, detections, backend) == coco_evaluate(raw, detections, backend), backend


def test_rows_rebuild_a_written_coco_file_exactly(tmp_path):
    rng = random.Random(1)
    images, annotations = [], []
    for image_id in (3, 8, 21):
        images.append({"id": image_id, "file_name": f"{image_id}.png", "width": 640, "height": 480})
        for _ in range(12):
            w, h = round(rng.uniform(4, 300), 2), round(rng.uniform(4, 200), 2)
            x, y = round(rng.uniform(0, 640 - w), 2), round(rng.uniform(0, 480 - h), 2)
            crowd = int(rng.random() < 0.15)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": rng.choice([1, 5, 90]),
                    "bbox": [x, y, w, h],
                    "area": round(w * h * rng.uniform(0.4, 0.9), 2),  # a segment's area, not the box's
                    "iscrowd": crowd,
                }
            )
    categories = [{"id": c, "name": f"c{c}"} for c in (1, 5, 90)]
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    raw, built = rebuilt_ground_truth(path)
    assert any(a["iscrowd"] for a in built["annotations"])
    assert_same_scores(raw, built)


@pytest.mark.skipif(not COCO128.is_dir(), reason=f"optional real data absent: {COCO128}")
def test_rows_rebuild_the_coco128_annotations_exactly():
    raw, built = rebuilt_ground_truth(COCO128 / "annotations" / "instances.json")
    assert_same_scores(raw, built)
