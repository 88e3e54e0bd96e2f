"""What ``vr export`` exports: a task's forward on normalised float input [N, C, H, W], with named inputs and outputs.

The graph is the task's own ``forward`` in eval mode (no copy of it): classifier logits [N, K]; FCN class scores
[N, K, H, W] at the input's size, exported with free height and width; a YOLO head's raw outputs, [N, S, S, 5B + C]
(v1) or one [N, A, h, w, 5 + C] per stride (anchors); localization's logits and boxes. The task names its outputs
(``VisionTask.export_output_names``); the input's axes that are free (``dynamic_axes``) are the batch, when asked
for, and those the task declares (``VisionTask.free_input_axes``: a segmenter's height and width).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ..tasks.base import VisionTask

INPUT_NAME = "images"
Shape = list[int | str]


@dataclass(frozen=True)
class Graph:
    """The task to export, an example input (one image, two with a free batch) and the names and shapes of its
    input and outputs; a free axis is named (``batch``, ``height``, ``width``) instead of sized."""

    model: nn.Module
    example: Tensor
    output_names: list[str]
    dynamic_axes: dict[int, str]
    input_shape: Shape
    output_shapes: list[Shape]
    input_name: str = INPUT_NAME


def as_list(outputs: Tensor | list[Tensor] | tuple[Tensor, ...]) -> list[Tensor]:
    """A forward's outputs as a list: one tensor, or the tensors it returned in order."""
    return list(outputs) if isinstance(outputs, list | tuple) else [outputs]


def _named(shape: tuple[int, ...], axes: dict[int, str]) -> Shape:
    return [axes.get(axis, size) for axis, size in enumerate(shape)]


def inference_graph(task: VisionTask, example: Tensor, dynamic_batch: bool) -> Graph:
    """The graph of ``task`` (eval mode, in its dtype) for ``example`` [N, C, H, W]. Every output's first axis is
    the batch, and a task's other free input axes are its outputs' same axes (a segmenter's class maps
    [N, K, H, W] are at the input's size), so an output's axes named as the input's free ones are those."""
    dynamic = {0: "batch"} if dynamic_batch else {}
    dynamic.update(task.free_input_axes)
    outputs = as_list(task(example))
    return Graph(
        model=task,
        example=example,
        output_names=task.export_output_names(len(outputs)),
        dynamic_axes=dynamic,
        input_shape=_named(tuple(example.shape), dynamic),
        output_shapes=[_named(tuple(o.shape), dynamic) for o in outputs],  # [N, ...]; class maps [N, K, H, W]
    )
