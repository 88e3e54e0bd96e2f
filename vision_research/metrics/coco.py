"""COCO detection metrics (Lin et al. 2014; the cocoapi's ``COCOeval``): the 12 summary numbers of ``COCOeval.stats``
— AP over IoU 0.50:0.95, at 0.50 and 0.75, per object size, and AR at 1 / 10 / 100 detections per image and per
size. Computed by pycocotools (the reference) or faster-coco-eval (its C++ port, same numbers, faster).

Framework boxes are xyxy pixels; COCO boxes are xywh. ``detections_to_coco`` converts per-image predictions
(in the original image's frame) to COCO result dicts, and ``CocoMeanAveragePrecision`` collects them over an
evaluation run, across processes under DDP.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import io
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from ..coco import GROUND_TRUTH_COLUMNS, check_unique_coco_ids, coco_index, instances_from_rows
from ..errors import ConfigError, DataError, unknown_name_error
from .samples import cat_state, first_occurrences

COCO_STATS_NAMES = (
    "map",
    "map_50",
    "map_75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
)
COCO_BACKENDS = ("auto", "pycocotools", "faster_coco_eval")
COCO_IOU_TYPES = ("bbox", "segm")


def _resolve_backend(backend: str) -> str:
    """``backend`` as a library name; "auto" is faster-coco-eval when importable, else pycocotools."""
    if backend not in COCO_BACKENDS:
        raise unknown_name_error("COCO evaluation backend", backend, COCO_BACKENDS)
    faster_available = importlib.util.find_spec("faster_coco_eval") is not None
    if backend == "auto":
        return "faster_coco_eval" if faster_available else "pycocotools"
    if backend == "faster_coco_eval" and not faster_available:
        raise ConfigError("COCO evaluation backend 'faster_coco_eval' is not installed: pip install faster-coco-eval")
    return backend


def _check_ground_truth(ground_truth: dict) -> None:
    missing = [key for key in ("images", "categories") if key not in ground_truth]
    if missing:
        raise DataError(f"the COCO ground truth has no {' / '.join(missing)}: expected an instances dict")
    check_unique_coco_ids(ground_truth, "the COCO ground truth")


def _check_detection_ids(ground_truth: dict, detections: list[dict]) -> None:
    """DataError naming unknown image / category ids (pycocotools would fail with a bare assert)."""
    try:
        image_ids = {d["image_id"] for d in detections}
        category_ids = {d["category_id"] for d in detections}
    except KeyError as err:
        raise DataError(f"a COCO detection has no {err}: expected image_id, category_id, bbox, score") from None
    for kind, seen, key in (("image", image_ids, "images"), ("category", category_ids, "categories")):
        unknown = sorted(seen - {entry["id"] for entry in ground_truth[key]})
        if unknown:
            shown = ", ".join(map(str, unknown[:10])) + (", ..." if len(unknown) > 10 else "")
            raise DataError(f"detections name {kind} ids not in the ground truth: {shown}")


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside (memory is still freed by reference counting).

    Both libraries allocate several objects per detection, which sets off repeated full collections over the
    whole heap: about a third of faster-coco-eval's time on 50k detections.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _quiet(*args: Any, **kwargs: Any) -> None:
    """A print function that prints nothing (faster-coco-eval takes one)."""


def _stats_pycocotools(ground_truth: dict, detections: list[dict], iou_type: str) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt_index = coco_index(ground_truth)
        if detections:
            dt_index = gt_index.loadRes(detections)
        else:
            # loadRes([]) fails on anns[0]; an index with no annotations is what it would build (faster-coco-eval's
            # loadRes does exactly this), and COCOeval scores it normally.
            dt_index = COCO()
            dt_index.dataset = {**ground_truth, "annotations": []}
            dt_index.createIndex()
        evaluator = COCOeval(gt_index, dt_index, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def _stats_faster_coco_eval(ground_truth: dict, detections: list[dict], iou_type: str) -> np.ndarray:
    from faster_coco_eval import COCO, COCOeval_faster

    gt_index = COCO(ground_truth, print_function=_quiet)
    evaluator = COCOeval_faster(gt_index, gt_index.loadRes(detections), iou_type, print_function=_quiet)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator.stats


_STATS: dict[str, Callable[[dict, list[dict], str], np.ndarray]] = {
    "pycocotools": _stats_pycocotools,
    "faster_coco_eval": _stats_faster_coco_eval,
}


def coco_evaluate(
    ground_truth: dict, detections: list[dict], backend: str = "auto", iou_type: str = "bbox"
) -> dict[str, float]:
    """The 12 ``COCOeval.stats`` numbers (``COCO_STATS_NAMES``) of ``detections`` against ``ground_truth``.

    Lin et al. 2014; cocoapi ``COCOeval`` with its default parameters (IoU 0.50:0.05:0.95, maxDets 1/10/100
    per image and category, areas small < 32² ≤ medium < 96² ≤ large by the ground truth's ``area``).
    ``ground_truth`` is a COCO instances dict; ``detections`` are COCO result dicts (image_id, category_id,
    bbox xywh, score). Every ground-truth image is evaluated: images without detections count as misses.
    A number is -1 where it is undefined (no non-crowd ground truth in that area range), as in COCOeval.
    With no detections at all the result is what COCOeval gives for an empty result set (0, or -1 where
    undefined); pycocotools' ``loadRes`` cannot load an empty list, so an empty result index is built instead.
    ``backend``: "pycocotools", "faster_coco_eval" or "auto" (faster-coco-eval when installed). Neither
    library prints, and the caller's dicts are not modified (both write keys into the annotations they get).
    """
    backend = _resolve_backend(backend)
    if iou_type not in COCO_IOU_TYPES:
        raise unknown_name_error("COCO iou_type", iou_type, COCO_IOU_TYPES)
    _check_ground_truth(ground_truth)
    _check_detection_ids(ground_truth, detections)
    with _gc_paused():
        ground_truth = {**ground_truth, "annotations": [dict(a) for a in ground_truth.get("annotations", [])]}
        stats = _STATS[backend](ground_truth, [dict(d) for d in detections], iou_type)
    return dict(zip(COCO_STATS_NAMES, (float(s) for s in stats[: len(COCO_STATS_NAMES)]), strict=True))


def _coco_results(
    image_ids: Tensor, boxes_xyxy: Tensor, scores: Tensor, labels: Tensor, category_ids: Sequence[int]
) -> list[dict]:
    """COCO result dicts from flat per-detection tensors (one image id per row)."""
    lookup = torch.as_tensor(list(category_ids), dtype=torch.int64)
    labels = labels.to("cpu", torch.int64)
    invalid = (labels < 0) | (labels >= len(lookup))
    if invalid.any():
        raise DataError(
            f"detection label {int(labels[invalid][0])} has no category id (category_ids has {len(lookup)} entries)"
        )
    boxes = boxes_xyxy.to("cpu", torch.float64).reshape(-1, 4)
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1)
    rows = zip(
        image_ids.tolist(),
        lookup[labels].tolist(),
        xywh.tolist(),
        scores.to("cpu", torch.float64).tolist(),
        strict=True,
    )
    return [{"image_id": i, "category_id": c, "bbox": b, "score": s} for i, c, b, s in rows]


def detections_to_coco(
    image_ids: Sequence[int] | Tensor,
    boxes_xyxy: Sequence[Tensor],
    scores: Sequence[Tensor],
    labels: Sequence[Tensor],
    category_ids: Sequence[int],
) -> list[dict]:
    """COCO result dicts (Lin et al. 2014 results format) from per-image detections.

    ``boxes_xyxy[i]`` [N_i, 4] are pixels of image ``image_ids[i]``'s original frame, ``labels[i]`` contiguous
    labels mapped to COCO category ids by ``category_ids[label]``; boxes become xywh (computed in float64).
    """
    if not len(image_ids) == len(boxes_xyxy) == len(scores) == len(labels):
        raise DataError(
            f"detections_to_coco got {len(image_ids)} image ids, {len(boxes_xyxy)} box tensors, "
            f"{len(scores)} score tensors and {len(labels)} label tensors; expected one of each per image"
        )
    if not len(image_ids):
        return []
    counts = torch.tensor([len(b) for b in boxes_xyxy])
    row_ids = torch.as_tensor(image_ids, dtype=torch.int64).cpu().repeat_interleave(counts)
    return _coco_results(
        row_ids,
        torch.cat([b.detach().to("cpu", torch.float64).reshape(-1, 4) for b in boxes_xyxy]),
        torch.cat([s.detach().to("cpu", torch.float64).reshape(-1) for s in scores]),
        torch.cat([lab.detach().cpu().reshape(-1) for lab in labels]),
        category_ids,
    )


class CocoMeanAveragePrecision(Metric):
    """COCO mAP / mAR (the 12 ``COCOeval.stats``, Lin et al. 2014) of detections collected over a run.

    ``update(preds, image_ids, ground_truth)`` takes per-image dicts ``boxes`` [N, 4] xyxy in the original image's
    pixels, ``scores`` [N] and contiguous ``labels`` [N], keeping the top ``max_detections`` per image by score (the
    detectron2 / torchmetrics convention; COCOeval itself caps detections per image *and category* at 100).
    ``compute()`` evaluates them with ``coco_evaluate``. The ground truth is either

    - ``ground_truth``, a COCO instances dict given at construction: every image in it is evaluated, so images never
      passed to ``update`` count as misses (feed the whole split); a plain attribute, never synced, reset or saved;
    - or, when that is None, the per-image ground-truth rows passed to ``update`` (``vision_research.coco``: what the
      instances dict holds for each object, in the detection targets as ``ground_truth``): exactly the images seen
      are evaluated, and nothing but the batches is needed, so a detector is scored from a bare DataLoader.

    Under DDP each rank's states are gathered (``dist_reduce_fx="cat"``). The DistributedSampler pads the
    last batch by repeating samples, so an image can arrive more than once; it is evaluated once.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        ground_truth: dict | None,
        category_ids: Sequence[int],
        backend: str = "auto",
        max_detections: int = 100,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if max_detections < 1:
            raise ConfigError(f"max_detections must be at least 1, got {max_detections}")
        if ground_truth is not None:
            _check_ground_truth(ground_truth)
            known = {c["id"] for c in ground_truth["categories"]}
            unknown = [c for c in category_ids if c not in known]
            if unknown:
                raise DataError(f"category_ids {unknown} are not categories of the COCO ground truth")
        self.backend = _resolve_backend(backend)
        self.ground_truth = ground_truth
        self.category_ids = list(category_ids)
        self.max_detections = max_detections
        # Per sample: its image id and how many detection rows it added (zero included). Per detection row:
        # box, score, label. The rows of sample k are the counts[k] rows after those of samples 0..k-1. The same
        # for the ground-truth rows (gt_counts, gt_rows) when they come with the batches.
        for name in ("sample_ids", "sample_counts", "boxes", "scores", "labels", "gt_counts", "gt_rows"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def _top_detections(self, pred: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        try:
            boxes, scores, labels = pred["boxes"].reshape(-1, 4), pred["scores"].reshape(-1), pred["labels"].reshape(-1)
        except KeyError as err:
            raise DataError(f"a prediction has no {err}: expected boxes, scores and labels") from None
        if not len(boxes) == len(scores) == len(labels):
            raise DataError(
                f"a prediction has {len(boxes)} boxes, {len(scores)} scores and {len(labels)} labels; expected equal"
            )
        if len(scores) > self.max_detections:
            # The best max_detections, kept in their original order so that COCOeval breaks score ties as it
            # would on the full list.
            keep = scores.argsort(descending=True, stable=True)[: self.max_detections].sort().values
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        return boxes, scores, labels

    def update(
        self,
        preds: list[dict[str, Tensor]],
        image_ids: Sequence[int] | Tensor,
        ground_truth: Sequence[Tensor] | None = None,
    ) -> None:
        """Add the detections ``preds`` of the images ``image_ids`` (one dict per image, which may hold none), and
        their ground-truth rows ([M, 7] each, ``vision_research.coco.GROUND_TRUTH_COLUMNS``) when the metric was
        made without a ground-truth dict."""
        ids = torch.as_tensor(image_ids, dtype=torch.int64).reshape(-1)
        if len(ids) != len(preds):
            raise DataError(f"update got {len(preds)} predictions for {len(ids)} image ids; expected one per image")
        if (ground_truth is None) == (self.ground_truth is None):
            raise DataError(
                "pass the ground-truth rows of each image to update() when the metric has no ground-truth dict, and "
                "only then (detection targets carry them as 'ground_truth')"
            )
        if ground_truth is not None:
            rows = [
                torch.as_tensor(r, dtype=torch.float64).reshape(-1, len(GROUND_TRUTH_COLUMNS)) for r in ground_truth
            ]
            if len(rows) != len(ids):
                raise DataError(
                    f"update got {len(rows)} ground truths for {len(ids)} image ids; expected one per image"
                )
            self.gt_counts.append(torch.tensor([len(r) for r in rows], dtype=torch.int64, device=self.device))
            self.gt_rows.append(torch.cat(rows).to(self.device))
        kept = [self._top_detections(p) for p in preds]
        device = self.device
        self.sample_ids.append(ids.to(device))
        self.sample_counts.append(torch.tensor([len(s) for _, s, _ in kept], dtype=torch.int64, device=device))
        self.boxes.append(torch.cat([b.detach().to(device, torch.float32) for b, _, _ in kept]).reshape(-1, 4))
        self.scores.append(torch.cat([s.detach().to(device, torch.float32) for _, s, _ in kept]))
        self.labels.append(torch.cat([lab.detach().to(device, torch.int64) for _, _, lab in kept]))

    def compute(self) -> dict[str, Tensor]:
        """The 12 COCO numbers (``COCO_STATS_NAMES``) as float64 scalar tensors."""
        sample_ids = cat_state(self.sample_ids, torch.zeros(0, dtype=torch.int64))
        counts = cat_state(self.sample_counts, torch.zeros(0, dtype=torch.int64))
        first = first_occurrences(sample_ids)
        ground_truth = self.ground_truth
        if ground_truth is None:
            ground_truth = self._ground_truth_from_rows(sample_ids, first)
        unknown = sorted(set(sample_ids.tolist()) - {image["id"] for image in ground_truth["images"]})
        if unknown:
            raise DataError(f"CocoMeanAveragePrecision got image ids not in the ground truth: {unknown[:10]}")
        # One result per image: a sample repeated by the DistributedSampler's padding arrives as another block
        # of rows for the same image id. Blocks are cut by the per-sample row counts, which works whatever
        # the rows hold (deduplicating equal rows would fail if two ranks' outputs differ in the last bit, and
        # "first len/n rows of the image" would split wrongly if their detection counts differ); gathering
        # concatenates every state rank by rank, so sample and row order agree after the sync.
        keep_row = first.repeat_interleave(counts)
        detections = _coco_results(
            sample_ids.repeat_interleave(counts)[keep_row],
            cat_state(self.boxes, torch.zeros(0, 4))[keep_row],
            cat_state(self.scores, torch.zeros(0))[keep_row],
            cat_state(self.labels, torch.zeros(0, dtype=torch.int64))[keep_row],
            self.category_ids,
        )
        stats = coco_evaluate(ground_truth, detections, backend=self.backend)
        return {name: torch.tensor(value, dtype=torch.float64) for name, value in stats.items()}

    def _ground_truth_from_rows(self, sample_ids: Tensor, first: Tensor) -> dict:
        """The instances dict of the images seen (each once), from the ground-truth rows they came with."""
        counts = cat_state(self.gt_counts, torch.zeros(0, dtype=torch.int64))
        rows = cat_state(self.gt_rows, torch.zeros(0, len(GROUND_TRUTH_COLUMNS), dtype=torch.float64))
        kept_rows = rows[first.repeat_interleave(counts)]
        return instances_from_rows(sample_ids[first].tolist(), kept_rows, counts[first].tolist(), self.category_ids)
