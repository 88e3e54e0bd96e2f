"""YOLO detection (Redmon et al. 2016; Redmon & Farhadi 2017, 2018): the task (``task.py``), its heads (``heads.py``),
the one decoding of their boxes (``box_coding.py``), the anchors (``anchors.py``) and the losses (``loss.py``)."""

from .anchors import YOLOV3_ANCHORS, kmeans_anchors, kmeans_anchors_from_data, shape_iou
from .box_coding import (
    MAX_LOG_SCALE,
    anchor_boxes,
    decode_anchor_boxes,
    decode_anchors,
    decode_detections,
    decode_v1,
    postprocess,
    v1_cell_boxes,
)
from .heads import MultiScaleYoloHead, YoloAnchorHead, YoloV1Head
from .loss import AnchorTargets, YoloAnchorLoss, YoloV1Loss, flatten_targets
from .task import YoloDetector
