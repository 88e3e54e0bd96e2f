"""COCO metrics against pycocotools run directly (the reference), faster-coco-eval against pycocotools, and the DDP
de-duplication of CocoMeanAveragePrecision."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
import torch

from vision_research.errors import ConfigError, DataError
from vision_research.metrics import COCO_STATS_NAMES, CocoMeanAveragePrecision, coco_evaluate, detections_to_coco

CATEGORY_IDS = [1, 7, 90]  # contiguous labels 0, 1, 2
SIZES = {"small": (6, 30), "medium": (35, 90), "large": (100, 220)}


def _random_box(rng: np.random.Generator, width: int, height: int) -> list[float]:
    low, high = SIZES[rng.choice(list(SIZES))]
    w, h = rng.uniform(low, high, size=2)
    x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
    return [float(x), float(y), float(w), float(h)]


def synthetic_coco(seed: int = 0, num_images: int = 30) -> tuple[dict, list[int], list[dict]]:
    """(ground truth, image ids, per-image predictions): crowd regions, all sizes, jittered detections with
    random scores, wrong-class and background false positives, images without objects or detections."""
    rng = np.random.default_rng(seed)
    images, annotations, image_ids, preds = [], [], [], []
    for k in range(num_images):
        image_id, width, height = 1000 + 3 * k, int(rng.integers(300, 640)), int(rng.integers(300, 640))
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": width, "height": height})
        image_ids.append(image_id)
        objects = [] if k % 6 == 5 else [_random_box(rng, width, height) for _ in range(rng.integers(1, 7))]
        boxes, labels = [], []
        for x, y, w, h in objects:
            label = int(rng.integers(3))
            crowd = rng.random() < 0.1
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": CATEGORY_IDS[label],
                    "bbox": [x, y, w, h],
                    "area": w * h * float(rng.uniform(0.6, 1.0)),  # a mask's area, below the box's
                    "iscrowd": int(crowd),
                }
            )
            if rng.random() < 0.8:
                jitter = rng.normal(0, 0.05, size=4) * [w, h, w, h]
                boxes.append([x + jitter[0], y + jitter[1], x + w + jitter[2], y + h + jitter[3]])
                labels.append(label if rng.random() < 0.9 else int(rng.integers(3)))
        for _ in range(rng.integers(0, 4)):  # background false positives
            x, y, w, h = _random_box(rng, width, height)
            boxes.append([x, y, x + w, y + h])
            labels.append(int(rng.integers(3)))
        if k % 7 == 3:
            boxes, labels = [], []
        preds.append(
            {
                "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                "scores": torch.tensor(rng.uniform(0.05, 1.0, size=len(boxes)), dtype=torch.float32),
                "labels": torch.tensor(labels, dtype=torch.int64),
            }
        )
    categories = [{"id": c, "name": f"class{c}", "supercategory": "object"} for c in CATEGORY_IDS]
    return {"images": images, "annotations": annotations, "categories": categories}, image_ids, preds


def to_coco(image_ids: list[int], preds: list[dict]) -> list[dict]:
    return detections_to_coco(
        image_ids, [p["boxes"] for p in preds], [p["scores"] for p in preds], [p["labels"] for p in preds], CATEGORY_IDS
    )


def reference_stats(ground_truth: dict, detections: list[dict]) -> np.ndarray:
    """pycocotools' COCOeval run the documented way, on copies of the inputs."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(ground_truth)
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(copy.deepcopy(detections)), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


@pytest.fixture(scope="module")
def coco_case() -> tuple[dict, list[int], list[dict], list[dict]]:
    ground_truth, image_ids, preds = synthetic_coco()
    return ground_truth, image_ids, preds, to_coco(image_ids, preds)


def as_array(stats: dict) -> np.ndarray:
    return np.array([float(stats[name]) for name in COCO_STATS_NAMES])


def test_synthetic_set_covers_the_cases(coco_case):
    ground_truth, _, preds, detections = coco_case
    areas = [a["area"] for a in ground_truth["annotations"] if not a["iscrowd"]]
    assert min(areas) < 32**2 and any(32**2 <= a < 96**2 for a in areas) and max(areas) >= 96**2
    assert any(a["iscrowd"] for a in ground_truth["annotations"])
    with_gt = {a["image_id"] for a in ground_truth["annotations"]}
    assert len(with_gt) < len(ground_truth["images"])
    assert any(len(p["scores"]) == 0 for p in preds) and len(detections) > 60


def test_pycocotools_backend_equals_cocoeval_run_directly(coco_case):
    ground_truth, _, _, detections = coco_case
    untouched = copy.deepcopy((ground_truth, detections))
    ours = as_array(coco_evaluate(ground_truth, detections, backend="pycocotools"))
    reference = reference_stats(ground_truth, detections)
    assert np.abs(ours - reference).max() <= 1e-9
    assert 0.2 < ours[0] < 0.9  # a meaningful mAP, neither trivial nor perfect
    assert (ground_truth, detections) == untouched  # neither library wrote into the caller's dicts


def test_faster_coco_eval_gives_identical_numbers(coco_case):
    ground_truth, _, _, detections = coco_case
    reference = as_array(coco_evaluate(ground_truth, detections, backend="pycocotools"))
    faster = as_array(coco_evaluate(ground_truth, detections, backend="faster_coco_eval"))
    # Observed: 11 of the 12 bit-identical, map_small 2.8e-17 apart. Of the 36,360 interpolated precision
    # entries behind them, 801 differ by one ulp (2.2e-16): pycocotools divides tp by tp + fp + np.spacing(1),
    # the C++ accumulate (detectron2's, which faster-coco-eval wraps) by tp + fp.
    np.testing.assert_allclose(faster, reference, rtol=0, atol=1e-15)


def test_no_detections_scores_zero_and_minus_one_where_undefined():
    ground_truth = {
        "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [0, 0, 20, 20], "area": 400, "iscrowd": 0}],
        "categories": [{"id": 7, "name": "a"}, {"id": 9, "name": "b"}],
    }
    expected = dict.fromkeys(COCO_STATS_NAMES, 0.0) | {
        "map_medium": -1.0,
        "map_large": -1.0,
        "mar_medium": -1.0,
        "mar_large": -1.0,
    }
    assert coco_evaluate(ground_truth, [], backend="pycocotools") == expected
    assert coco_evaluate(ground_truth, [], backend="faster_coco_eval") == expected


def test_detections_to_coco_converts_boxes_and_labels():
    results = detections_to_coco(
        torch.tensor([5, 8]),
        [torch.tensor([[10.0, 20.0, 40.0, 25.0]]), torch.zeros(0, 4)],
        [torch.tensor([0.5]), torch.zeros(0)],
        [torch.tensor([2]), torch.zeros(0, dtype=torch.int64)],
        CATEGORY_IDS,
    )
    assert results == [{"image_id": 5, "category_id": 90, "bbox": [10.0, 20.0, 30.0, 5.0], "score": 0.5}]


def test_metric_in_two_batches_equals_coco_evaluate_at_once(coco_case):
    ground_truth, image_ids, preds, detections = coco_case
    metric = CocoMeanAveragePrecision(ground_truth, CATEGORY_IDS, backend="pycocotools")
    metric.update(preds[:13], image_ids[:13])
    metric.update(preds[13:], torch.tensor(image_ids[13:]))
    result = metric.compute()
    assert set(result) == set(COCO_STATS_NAMES)
    assert as_array(result).tolist() == as_array(coco_evaluate(ground_truth, detections, "pycocotools")).tolist()


def test_metric_counts_a_padded_duplicate_once(coco_case):
    ground_truth, image_ids, preds, detections = coco_case
    expected = as_array(coco_evaluate(ground_truth, detections, "pycocotools"))
    # What a 2-rank gather looks like when the DistributedSampler pads: rank 1 repeats images of rank 0.
    metric = CocoMeanAveragePrecision(ground_truth, CATEGORY_IDS, backend="pycocotools")
    metric.update(preds[:15], image_ids[:15])
    metric.update(preds[15:] + preds[:2], image_ids[15:] + image_ids[:2])
    assert as_array(metric.compute()).tolist() == expected.tolist()
    # The repeat is recognised by its sample, not by its rows: rows that differ in the last bit, or a copy
    # with a different number of rows, still leave one result per image (the first occurrence).
    metric.reset()
    metric.update(preds, image_ids)
    assert len(preds[0]["scores"]) >= 2
    noisy = {k: v[:-1] for k, v in preds[0].items()} | {"scores": preds[0]["scores"][:-1] + 1e-6}
    metric.update([noisy, preds[1]], image_ids[:2])
    assert as_array(metric.compute()).tolist() == expected.tolist()


def test_metric_images_without_detections_count_as_misses():
    ground_truth = {
        "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
        "annotations": [
            {"id": k, "image_id": k, "category_id": 7, "bbox": [10, 10, 50, 50], "area": 2500, "iscrowd": 0}
            for k in (1, 2)
        ],
        "categories": [{"id": 7, "name": "a"}],
    }
    metric = CocoMeanAveragePrecision(ground_truth, [7])
    hit = {
        "boxes": torch.tensor([[10.0, 10.0, 60.0, 60.0]]),
        "scores": torch.tensor([0.9]),
        "labels": torch.tensor([0]),
    }
    empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
    metric.update([hit, empty], [1, 2])
    result = metric.compute()
    assert result["mar_100"].item() == 0.5  # one of the two objects found
    # At every IoU threshold: precision 1 at the 51 recall thresholds 0, 0.01, ..., 0.5 and 0 at the 50 above.
    assert result["map"].item() == pytest.approx(51 / 101, abs=1e-12)


def test_metric_keeps_the_top_detections_per_image(coco_case):
    ground_truth, image_ids, preds, _ = coco_case
    top = [{k: v[p["scores"].argsort(descending=True)[:2].sort().values] for k, v in p.items()} for p in preds]
    metric = CocoMeanAveragePrecision(ground_truth, CATEGORY_IDS, backend="pycocotools", max_detections=2)
    metric.update(preds, image_ids)
    expected = coco_evaluate(ground_truth, to_coco(image_ids, top), "pycocotools")
    assert as_array(metric.compute()).tolist() == as_array(expected).tolist()


def test_unknown_image_or_category_id_is_a_data_error(coco_case):
    ground_truth, _, _, detections = coco_case
    with pytest.raises(DataError, match="image ids not in the ground truth: 4242"):
        coco_evaluate(ground_truth, [*detections, {**detections[0], "image_id": 4242}])
    with pytest.raises(DataError, match="category ids not in the ground truth: 3"):
        coco_evaluate(ground_truth, [*detections, {**detections[0], "category_id": 3}])
    metric = CocoMeanAveragePrecision(ground_truth, CATEGORY_IDS)
    metric.update([{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0)}], [4242])
    with pytest.raises(DataError, match="4242"):
        metric.compute()
    with pytest.raises(DataError, match="label 3 has no category id"):
        detections_to_coco([1000], [torch.zeros(1, 4)], [torch.ones(1)], [torch.tensor([3])], CATEGORY_IDS)


def test_unknown_backend_is_a_config_error(coco_case):
    ground_truth, _, _, detections = coco_case
    with pytest.raises(ConfigError, match="unknown COCO evaluation backend 'faster'"):
        coco_evaluate(ground_truth, detections, backend="faster")
    with pytest.raises(ConfigError, match="backend"):
        CocoMeanAveragePrecision(ground_truth, CATEGORY_IDS, backend="cocoapi")
