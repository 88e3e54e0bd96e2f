"""Inference backends: one model (a zoo network or a task), the same outputs, faster.

- ``eager``: the module as trained, in eval mode.
- ``fused``: batch norms folded into the convolutions (:mod:`.folding`), still eager.
- ``compile``: ``torch.compile`` (Inductor) with *freezing*: the weights become constants, so batch norms fold,
  constant expressions are precomputed and oneDNN gets its weights pre-packed once.
- ``onnxruntime``: the ONNX export of :mod:`vision_research.export` run by onnxruntime's CPU provider.
- ``int8``: PT2E post-training quantisation calibrated on the user's images (:mod:`.quantize`), then compiled.
- ``auto`` (``vr eval``, ``vr predict``): ``fused``, or ``compile`` when the work is long enough to repay the
  compilation — decided by timing one batch of the fused model (:func:`compiling_pays`).

A compiled or exported graph is built for the example's batch size and called through :class:`FixedBatch`.
"""

from __future__ import annotations

import contextlib
import itertools
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError, first_line, unknown_name_error
from . import BACKENDS
from .fixed_batch import FixedBatch
from .folding import fold_batch_norms
from .quantize import quantize_int8

# Compiling ResNet-50 with freezing took 21.6 s on this project's 2-core CPU and ran ×1.17 faster than the folded
# eager graph at batch 16 (12.2 vs 10.4 img/s, `vr benchmark resnet50 --backend fused compile`), so it pays once the
# folded run would take more than 21.6 / (1 − 1/1.17) ≈ 150 s. Smaller networks compile faster: the rule errs
# towards not compiling.
COMPILE_PAYS_AFTER_SECONDS = 150.0

Forward = Callable[[Tensor], Any]


def check_backend(name: str, choices: Iterable[str] = BACKENDS) -> str:
    """``name`` if it is one of ``choices``, else a one-line error with the close matches."""
    choices = list(choices)
    if name not in choices:
        raise unknown_name_error("backend", name, choices)
    return name


@contextlib.contextmanager
def _frozen() -> Iterator[None]:
    """Inductor's freezing on for the duration (weights as constants: inference graphs only)."""
    import torch._inductor.config as inductor_config

    with inductor_config.patch(freezing=True):
        yield


def compile_frozen(forward: Forward, example: Tensor) -> Forward:
    """``forward`` compiled by Inductor with freezing for batches shaped as ``example``; compiled here, once."""
    compiled = torch.compile(forward, dynamic=False)

    def run(images: Tensor) -> Any:
        with _frozen(), torch.inference_mode():
            return compiled(images)

    with torch.inference_mode(), warnings.catch_warnings():
        # Inductor's int8 lowering copies a tensor with torch.tensor(); the advice it prints is for torch's authors.
        warnings.filterwarnings("ignore", "To copy construct from a tensor", UserWarning)
        try:
            run(example.clone())  # evaluation's and prediction's batches are inference tensors: compile for them
        except Exception as err:  # Dynamo and Inductor raise many types, each with a long explanation
            raise ConfigError(
                f"torch.compile cannot compile this model ({first_line(err)}); use backend=fused"
            ) from None
    return run


def onnxruntime_forward(module: nn.Module, example: Tensor) -> Forward:
    """``module`` exported to ONNX (a temporary file, loaded into memory) and run by onnxruntime."""
    from ..export.graph import INPUT_NAME, Graph, as_list
    from ..export.onnx_format import load, require, save

    require()
    with torch.no_grad():
        count = len(as_list(module(example)))
    graph = Graph(module, example.contiguous(), [f"output{i}" for i in range(count)], {}, [], [], INPUT_NAME)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        save(graph, path, opset=None)
        session = load(path)

    def run(images: Tensor) -> Any:
        outputs = session(images.contiguous())
        return outputs[0] if count == 1 else tuple(outputs)

    return run


def build_forward(module: nn.Module, backend: str, example: Tensor, calibration: Iterable[Tensor] = ()) -> Forward:
    """``module``'s forward on ``backend``, built for batches shaped as ``example`` (normalised images on the
    module's device, channels-last or not as they will arrive); ``calibration``: images for ``int8``."""
    module.eval()
    if check_backend(backend) == "eager":
        return module
    with torch.inference_mode(False):  # a normal tensor to trace and export with (an inference one may not be)
        example = example.clone()
    channels_last = example.is_contiguous(memory_format=torch.channels_last) and example.dim() == 4
    if backend == "fused":
        return fold_batch_norms(module, example)
    if backend == "compile":
        run = compile_frozen(module.forward, example)
    elif backend == "onnxruntime":
        run = onnxruntime_forward(module, example)
    else:
        run = compile_frozen(quantize_int8(module, example, calibration), example)
    return FixedBatch(run, len(example), channels_last)


def build_from_batches(
    module: nn.Module, backend: str, batches: Iterable[Tensor], count: int, calibration_images: int = 256
) -> tuple[Forward, str]:
    """``module``'s forward on ``backend`` (or ``auto``), built on the first of ``batches`` (normalised images, of
    which there are ``count``); ``int8`` calibrated on the first ``calibration_images`` of them. Returns the
    forward and the backend's name (``auto`` resolved)."""
    check_backend(backend, (*BACKENDS, "auto"))
    if backend == "eager":  # nothing to build: the batches are not read
        return module, backend
    device = next(module.parameters()).device
    iterator = (images.to(device).contiguous(memory_format=torch.channels_last) for images in batches)
    example = next(iterator, None)
    if example is None:
        raise ConfigError(f"backend={backend}: there are no images to build it on")
    if backend == "auto":
        fused = build_forward(module, "fused", example)
        if not compiling_pays(fused, example, count):
            return fused, "fused"
        backend = "compile"

    def calibration() -> Iterator[Tensor]:  # read only if the backend quantises
        seen = 0
        for images in itertools.chain([example], iterator):
            yield images[: calibration_images - seen]
            seen += len(images)
            if seen >= calibration_images:
                return

    return build_forward(module, backend, example, calibration()), backend


def compiling_pays(fused: Forward, example: Tensor, batches: int) -> bool:
    """Whether the ``fused`` model would take more than :data:`COMPILE_PAYS_AFTER_SECONDS` for ``batches`` batches
    like ``example`` (timed on one, after one warm-up)."""
    with torch.inference_mode():
        fused(example)
        start = time.perf_counter()
        fused(example)
        seconds = time.perf_counter() - start
    return seconds * batches > COMPILE_PAYS_AFTER_SECONDS


@contextlib.contextmanager
def serving(module: nn.Module, forward: Forward) -> Iterator[nn.Module]:
    """``module`` whose calls run ``forward`` instead of its own ``forward`` (this instance, for the duration):
    a task's evaluation and prediction steps, which call ``self(images)``, then run the backend."""
    if forward is module:
        yield module
        return
    module.forward = forward  # an instance attribute shadows the class's method
    try:
        yield module
    finally:
        del module.forward
