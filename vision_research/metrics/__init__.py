"""Evaluation metrics: COCO mAP / mAR (pycocotools or faster-coco-eval), Pascal VOC AP, segmentation mIoU."""

from .detection import (
    COCO_BACKENDS,
    COCO_STATS_NAMES,
    CocoMeanAveragePrecision,
    coco_evaluate,
    detections_to_coco,
    voc_ap,
    voc_evaluate,
)
from .segmentation import SegmentationMetrics, scores_from_confusion
