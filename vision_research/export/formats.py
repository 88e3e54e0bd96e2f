"""The export formats: how each writes a :class:`Graph` to a file and how that file is run back for the check.

- ``onnx`` (``.onnx``): ``onnx_format.py``;
- ``torchscript`` (``.pt``): ``torch.jit.trace`` then ``torch.jit.save``, run by ``torch.jit.load``. The trace
  records the operations of the example's forward (https://pytorch.org/docs/stable/generated/torch.jit.trace.html);
  torch 2.14 marks TorchScript deprecated in favour of torch.export, whose notices are silenced here;
- ``exported_program`` (``.pt2``): ``torch.export.export`` then ``torch.export.save``, run by
  ``torch.export.load(...).module()`` (https://pytorch.org/docs/stable/export.html); free axes are
  ``Dim.DYNAMIC``, and the loaded module checks the input against the ranges the export found.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from torch import Tensor
from torch.export import Dim

from . import onnx_format
from .graph import Graph, as_list

Runner = Callable[[Tensor], list[Tensor]]


@dataclass(frozen=True)
class Format:
    """An export format: the file suffix, what writes it (``save(graph, path, opset)`` → the ONNX opset or None)
    and what runs it back (``load(path)`` → a function of the input batch), and the packages it needs."""

    suffix: str
    exporter: str
    runtime: str
    save: Callable[[Graph, Path, int | None], int | None]
    load: Callable[[Path], Runner]
    require: Callable[[], None] = lambda: None


@contextmanager
def _quiet_jit() -> Iterator[None]:
    """Without the FutureWarning torch 2.14 gives at every ``torch.jit`` call (the module docstring says it)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.* is deprecated", category=FutureWarning)
        yield


@contextmanager
def _traceable(task: L.LightningModule) -> Iterator[None]:
    """``torch.jit.trace`` reads every attribute of the module, and a LightningModule's ``trainer`` raises outside
    a Trainer unless Lightning's own JIT switch (``_jit_is_scripting``, what its ``to_torchscript`` sets) is on."""
    task._jit_is_scripting = True
    try:
        yield
    finally:
        del task._jit_is_scripting


def save_torchscript(graph: Graph, path: Path, opset: int | None) -> None:
    with _traceable(graph.model), _quiet_jit():
        # strict=False: a detector with several scales returns a list.
        traced = torch.jit.trace(graph.model, graph.example, strict=False)
        torch.jit.save(traced, str(path))


def load_torchscript(path: Path) -> Runner:
    with _quiet_jit():
        module = torch.jit.load(str(path), map_location="cpu")
    return lambda images: as_list(module(images))


def save_exported_program(graph: Graph, path: Path, opset: int | None) -> None:
    free = {axis: Dim.DYNAMIC for axis in graph.dynamic_axes}
    program = torch.export.export(graph.model, (graph.example,), dynamic_shapes=(free,) if free else None)
    torch.export.save(program, str(path))


def load_exported_program(path: Path) -> Runner:
    module = torch.export.load(str(path)).module()
    return lambda images: as_list(module(images))


FORMATS: dict[str, Format] = {
    "onnx": Format(
        ".onnx", "torch.onnx.export (dynamo)", "onnxruntime", onnx_format.save, onnx_format.load, onnx_format.require
    ),
    "torchscript": Format(".pt", "torch.jit.trace", "torch.jit.load", save_torchscript, load_torchscript),
    "exported_program": Format(
        ".pt2", "torch.export.export", "torch.export.load", save_exported_program, load_exported_program
    ),
}
