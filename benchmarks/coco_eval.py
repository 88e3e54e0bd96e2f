"""COCO bbox evaluation time: pycocotools (the reference) vs faster-coco-eval, same detections, same numbers.

A seeded synthetic set (``--images`` images with about 5 ground-truth boxes each over 80 categories and
``--detections`` detections per image: jittered copies of the objects plus background false positives, random
scores) is scored by ``vision_research.metrics.coco_evaluate`` with each backend. One warm-up call each, then
the backends alternate over ``--repeats`` rounds; the report gives the median seconds of each (index building,
loadRes, evaluate, accumulate, summarize), the ratio pycocotools / faster-coco-eval (goal ≥ 5) and the largest
difference between the two sets of 12 numbers (expected: rounding only).

    python benchmarks/coco_eval.py                        # 500 images x 100 detections, 3 repeats
    python benchmarks/coco_eval.py --images 200 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from vision_research.metrics import COCO_STATS_NAMES, coco_evaluate  # noqa: E402

NUM_CATEGORIES = 80
BACKENDS = ("pycocotools", "faster_coco_eval")


def random_xywh(rng: np.random.Generator, count: int, width: float, height: float) -> np.ndarray:
    """``count`` boxes [N, 4] xywh inside a width × height image, sides log-uniform in 8..300 px (all COCO sizes)."""
    sides = np.exp(rng.uniform(np.log(8), np.log(300), size=(count, 2)))
    sides = np.minimum(sides, [width - 1, height - 1])
    corners = rng.uniform(0, 1, size=(count, 2)) * ([width, height] - sides)
    return np.concatenate([corners, sides], axis=1)


def synthetic_set(num_images: int, detections_per_image: int, seed: int = 0) -> tuple[dict, list[dict]]:
    """(COCO ground truth, COCO results): about 5 objects per image; per image the detections are up to 3
    jittered copies of each object (same category 90% of the time) and background boxes up to the count."""
    rng = np.random.default_rng(seed)
    category_ids = np.arange(1, NUM_CATEGORIES + 1) + np.arange(NUM_CATEGORIES) // 10  # ids with gaps, as COCO
    images, annotations, results = [], [], []
    for image_id in range(1, num_images + 1):
        width, height = int(rng.integers(320, 641)), int(rng.integers(320, 641))
        images.append({"id": image_id, "file_name": f"{image_id:06d}.jpg", "width": width, "height": height})
        gt = random_xywh(rng, int(rng.poisson(5)), width, height)
        gt_cats = rng.choice(category_ids, size=len(gt))
        crowd = rng.random(len(gt)) < 0.01
        for box, cat, is_crowd in zip(gt.tolist(), gt_cats.tolist(), crowd.tolist(), strict=True):
            annotation = {"id": len(annotations) + 1, "image_id": image_id, "category_id": cat, "bbox": box}
            annotations.append(annotation | {"area": box[2] * box[3], "iscrowd": int(is_crowd)})
        copies = np.repeat(np.arange(len(gt)), 3)[:detections_per_image]
        jitter = rng.normal(0, 0.08, size=(len(copies), 4)) * np.tile(gt[copies, 2:], 2)
        hits = gt[copies] + jitter
        hits[:, 2:] = np.maximum(hits[:, 2:], 1.0)
        hit_cats = np.where(rng.random(len(copies)) < 0.9, gt_cats[copies], rng.choice(category_ids, len(copies)))
        background = random_xywh(rng, detections_per_image - len(copies), width, height)
        boxes = np.concatenate([hits, background])
        cats = np.concatenate([hit_cats, rng.choice(category_ids, size=len(background))])
        scores = np.concatenate([rng.uniform(0.3, 1.0, len(hits)), rng.uniform(0.0, 0.7, len(background))])
        results += [
            {"image_id": image_id, "category_id": c, "bbox": b, "score": s}
            for b, c, s in zip(boxes.tolist(), cats.tolist(), scores.tolist(), strict=True)
        ]
    categories = [{"id": int(c), "name": f"class{c}", "supercategory": "object"} for c in category_ids]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def timed(ground_truth: dict, detections: list[dict], backend: str) -> tuple[float, dict[str, float]]:
    start = time.perf_counter()
    stats = coco_evaluate(ground_truth, detections, backend=backend)
    return time.perf_counter() - start, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--detections", type=int, default=100, help="detections per image")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    ground_truth, detections = synthetic_set(args.images, args.detections)
    print(
        f"{len(ground_truth['images'])} images, {len(ground_truth['annotations'])} ground-truth boxes, "
        f"{len(detections)} detections, {NUM_CATEGORIES} categories"
    )
    stats = {backend: timed(ground_truth, detections, backend)[1] for backend in BACKENDS}  # warm-up
    seconds: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
    for _ in range(args.repeats):
        for backend in BACKENDS:
            elapsed, stats[backend] = timed(ground_truth, detections, backend)
            seconds[backend].append(elapsed)

    median = {backend: statistics.median(times) for backend, times in seconds.items()}
    difference = max(abs(stats["pycocotools"][n] - stats["faster_coco_eval"][n]) for n in COCO_STATS_NAMES)
    print(f"\n| COCO bbox eval ({args.images} images x {args.detections} detections) | median s | runs (s) |")
    print("|---|---:|---|")
    for backend in BACKENDS:
        print(f"| {backend} | {median[backend]:.3f} | {', '.join(f'{t:.3f}' for t in seconds[backend])} |")
    print(
        f"| **ratio pycocotools / faster-coco-eval** | **{median['pycocotools'] / median['faster_coco_eval']:.1f}** | |"
    )
    print(f"\nmap {stats['pycocotools']['map']:.4f}, map_50 {stats['pycocotools']['map_50']:.4f}")
    print(f"max |pycocotools - faster_coco_eval| over the 12 numbers: {difference:.3g}")
    assert difference <= 1e-12, "the backends disagree beyond rounding"


if __name__ == "__main__":
    main()
