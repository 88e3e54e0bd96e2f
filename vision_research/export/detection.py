"""The post-processing of an exported detector: its raw outputs decoded and NMS-filtered by the framework's code.

An exported YOLO model stops at the head's raw outputs; :func:`detections` runs what the task runs after its head
(``tasks.detection.decode_detections``: ``decode_v1`` / ``decode_anchors`` and per-class ``batched_nms``) with
the arguments the sidecar's ``postprocess`` holds, so an exported model finds exactly the eager task's boxes.
NMS stays outside the graph: its per-image candidate counts depend on the data, which a trace would freeze.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from ..tasks.detection import decode_detections
from .sidecar import read_sidecar


def detections(outputs: Sequence[np.ndarray | Tensor], sidecar: str | Path | dict[str, Any]) -> list[dict[str, Tensor]]:
    """Per-image detections ``{"boxes" [K, 4] xyxy input pixels, "scores" [K], "labels" [K]}``, best first, from
    the ``outputs`` an exported detector returned (onnxruntime's arrays or tensors, in the file's order) and its
    ``sidecar`` (path or contents). Boxes are in the letterboxed input's pixels:
    ``vision_research.geometry.boxes_to_original`` maps them to the original image."""
    decoding = read_sidecar(sidecar).get("postprocess")
    if decoding is None:
        raise ConfigError("detections() decodes exported detectors; this sidecar has no 'postprocess' (not detection)")
    raw = [torch.as_tensor(out) for out in outputs]
    return decode_detections(raw if decoding.get("anchors") else raw[0], **decoding)
