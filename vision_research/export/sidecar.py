"""The JSON sidecar of an exported file (``<file>.json`` beside it): what a runtime needs to feed the file and read it.

- ``format``, ``file``, ``dtype``, ``opset`` (ONNX; else null), ``exporter``, ``torch``, ``checkpoint``;
- ``task``, ``model``, ``model_options``;
- the input: ``input_name``, ``input_shape`` (free axes named: ``batch``, ``height``, ``width``), ``input_size``
  [H, W], ``channels``, ``layout`` (NCHW), and how an image becomes it: ``preprocessing`` (``letterbox``: the
  longest side to ``input_size``, centred on a padded square; ``resize_crop``: shorter side resized, centre crop),
  then ``(x / 255 − mean) / std`` per channel with ``mean`` and ``std``;
- ``class_names``, and what the task adds (``VisionTask.export_facts``; detection: ``category_ids``, the COCO ids
  of the classes in order, and ``postprocess``, the keyword arguments of its decoding, which :func:`postprocess`
  applies to the file's outputs);
- ``outputs``: ``name`` and ``shape`` of each, in order;
- ``verification``: ``images``, ``seed``, ``max_abs_diff``, ``output_scale``, ``tolerance``, ``passed``,
  ``runtime`` (``verify.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor

from ..tasks import TASKS
from ..tasks.base import VisionTask
from .graph import Graph


def sidecar_path(path: Path) -> Path:
    """``<file>.json`` beside ``path`` (``last.onnx`` → ``last.onnx.json``: one per format of a checkpoint)."""
    return path.with_name(f"{path.name}.json")


def task_facts(cfg: DictConfig, task: VisionTask, checkpoint: Path) -> dict[str, Any]:
    """The sidecar's facts of the checkpoint's task, read before it is cast to the export's dtype (a detector's
    anchors stay fp32)."""
    mean, std = task.input_stats
    facts: dict[str, Any] = {
        "torch": torch.__version__,
        "checkpoint": str(checkpoint.resolve()),
        "task": cfg.task.name,
        "model": task.hparams.get("model"),
        "model_options": task.hparams.get("model_options"),
        "preprocessing": task.preprocessing,
        "mean": list(mean),
        "std": list(std),
        "class_names": task.class_names,
        **task.export_facts(),
    }
    return facts


def graph_facts(graph: Graph) -> dict[str, Any]:
    """The sidecar's facts of the exported graph: its input and outputs."""
    return {
        "input_name": graph.input_name,
        "input_shape": graph.input_shape,
        "input_size": list(graph.example.shape[2:]),
        "channels": graph.example.shape[1],
        "layout": "NCHW",
        "outputs": [
            {"name": name, "shape": shape} for name, shape in zip(graph.output_names, graph.output_shapes, strict=True)
        ],
    }


def write_sidecar(path: Path, metadata: dict[str, Any]) -> Path:
    """Write ``metadata`` to the sidecar of ``path``; returns the sidecar's path."""
    sidecar = sidecar_path(path)
    sidecar.write_text(json.dumps(metadata, indent=2, default=torch.Tensor.tolist) + "\n")  # tensors as lists
    return sidecar


def read_sidecar(sidecar: str | Path | dict[str, Any]) -> dict[str, Any]:
    """A sidecar's contents from its path (or the contents themselves)."""
    return sidecar if isinstance(sidecar, dict) else json.loads(Path(sidecar).read_text())


def postprocess(outputs: Sequence[np.ndarray | Tensor], sidecar: str | Path | dict[str, Any]) -> Any:
    """What an exported file's ``outputs`` (onnxruntime's arrays or tensors, in the file's order) mean, by its
    ``sidecar`` (path or contents): the task's ``postprocess_exported`` — a detector's per-image detections
    ``{"boxes" [K, 4] xyxy input pixels, "scores" [K], "labels" [K]}``, best first, decoded and NMS-filtered as the
    eager task does (``vision_research.geometry.boxes_to_original`` maps the boxes to the original image); the
    outputs as tensors for the other tasks."""
    facts = read_sidecar(sidecar)
    return TASKS.get(facts["task"]).postprocess_exported([torch.as_tensor(out) for out in outputs], facts)
