"""Evaluation metrics: COCO mAP / mAR (pycocotools or faster-coco-eval), Pascal VOC AP, segmentation mIoU."""

from .coco import COCO_BACKENDS, COCO_STATS_NAMES, CocoMeanAveragePrecision, coco_evaluate, detections_to_coco
from .segmentation import SegmentationMetrics, scores_from_confusion
from .voc import VocMeanAveragePrecision, voc_ap, voc_evaluate
