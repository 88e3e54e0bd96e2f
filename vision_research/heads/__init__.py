"""Task heads that read a backbone's stage maps through its ``feature_info`` (see ``models/base.py``)."""

from .fcn import AuxiliaryHead, BilinearUpsample, FCNHead
from .yolo_head import (
    YOLOV3_ANCHORS,
    MultiScaleYoloHead,
    YoloAnchorHead,
    YoloV1Head,
    decode_anchor_boxes,
    decode_anchors,
    decode_v1,
    kmeans_anchors,
    postprocess,
    shape_iou,
    v1_cell_boxes,
)
