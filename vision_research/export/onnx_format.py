"""ONNX export with ``torch.onnx.export(dynamo=True)``, run back with onnxruntime's CPU provider.

The dynamo exporter (torch's default since 2.9; the TorchScript-based one is deprecated) captures the model with
``torch.export`` and translates the ATen graph with onnxscript's function library
(https://pytorch.org/docs/stable/onnx_export.html). Free axes are passed by name, so the file's input is
``images [batch, C, height, width]`` where those are free. Its translations are written in opset 18 and newer
(https://onnx.ai/onnx/operators/): an older ``opset`` is reached by onnx's version converter when it can, and
otherwise the exporter keeps its own opset — reported here as an error naming the opset that works.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor

from ..errors import ConfigError
from .graph import Graph

INSTALL = "pip install 'vision_research[export]'"


def require() -> None:
    """onnx, onnxscript (the dynamo exporter's translations) and onnxruntime (the check) are importable."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ConfigError(
            f"format=onnx needs onnx, onnxscript and onnxruntime ({err.name} is missing): {INSTALL}"
        ) from None


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter's own logging off (an opset it cannot convert to is logged with a traceback): the outcome is
    checked after it and reported in one line."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _causes(err: BaseException) -> list[str]:
    """The messages of ``err`` and of the exceptions that caused it, outermost first."""
    messages = []
    while err is not None:
        messages.append(str(err))
        err = err.__cause__
    return messages


def unsupported_error(err: BaseException) -> ConfigError:
    """A one-line error for an exporter failure: the ATen operator it could not translate, when it names one, and the
    formats that keep every operator."""
    causes = _causes(err)
    text = "\n".join(causes)
    op = re.search(r"OpOverload\(op='([\w.]+)'", text) or re.search(r"torch\.ops\.(\w+\.\w+)", text)
    reason = next((line.strip() for line in causes[-1].splitlines() if line.strip()), type(err).__name__)
    what = f"cannot translate {op[1]} to ONNX" if op else "cannot export this model"
    return ConfigError(
        f"format=onnx: torch.onnx {what} ({reason}); export format=exported_program or format=torchscript instead"
    )


def save(graph: Graph, path: Path, opset: int | None) -> int:
    """Write ``graph`` to ``path``; returns the file's opset (the default ONNX domain's)."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if opset is not None and not 1 <= opset <= newest:
        raise ConfigError(f"opset={opset}: onnx {onnx.__version__} knows opsets 1 to {newest}")
    with _quiet_exporter():
        try:
            program = torch.onnx.export(
                graph.model,
                (graph.example,),
                input_names=[graph.input_name],
                output_names=graph.output_names,
                opset_version=opset,
                dynamic_shapes=(graph.dynamic_axes,) if graph.dynamic_axes else None,
                verbose=False,
            )
        except torch.onnx.OnnxExporterError as err:
            raise unsupported_error(err) from None
    written = next(entry.version for entry in program.model_proto.opset_import if entry.domain in ("", "ai.onnx"))
    if opset is not None and written != opset:
        raise ConfigError(
            f"opset={opset}: torch.onnx cannot write this model in opset {opset} (it stays at opset {written}); "
            f"use opset={written} or newer, or leave opset unset"
        )
    program.save(str(path))
    return written


def load(path: Path) -> Callable[[Tensor], list[Tensor]]:
    """An onnxruntime session of ``path`` on the CPU, as a function of the input batch."""
    import onnxruntime
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except (ort_errors.Fail, ort_errors.InvalidGraph, ort_errors.NotImplemented) as err:
        reason = str(err).splitlines()[0].rsplit("failed:", 1)[-1].strip()
        raise ConfigError(
            f"onnxruntime {onnxruntime.__version__} cannot run {path} ({reason}); export dtype=fp32 or fp16, or "
            "format=exported_program"
        ) from None
    name = session.get_inputs()[0].name
    return lambda images: [torch.from_numpy(out) for out in session.run(None, {name: images.numpy()})]
