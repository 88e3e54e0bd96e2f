"""int8 post-training quantisation with PyTorch's PT2E flow and the x86 quantiser (torchao).

``torch.export`` captures the graph; ``X86InductorQuantizer`` annotates it with oneDNN's int8 recipe (weights
symmetric per output channel, activations asymmetric per tensor, convolution + batch norm + ReLU and the
residual additions quantised as fused patterns); ``prepare_pt2e`` inserts observers, calibration batches of the
user's images set the activation ranges, and ``convert_pt2e`` replaces the observers with quantise / dequantise
pairs (https://pytorch.org/ao/stable/tutorials_source/pt2e_quant_x86_inductor.html). The result runs fast only
once Inductor lowers those patterns to int8 kernels, so the backend compiles it (:mod:`.backends`).

The export is strict (TorchDynamo): each call of a module that a forward calls twice — torchvision's and our
ResNet blocks apply one ``ReLU`` module twice — is then a pattern of its own, which the quantiser needs.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from ..errors import ConfigError, first_line
from .fixed_batch import FixedBatch

INSTALL = "pip install 'vision_research[export]'"


def require_torchao() -> None:
    """torchao (PyTorch's quantisation library, home of the PT2E flow) is importable, else a one-line error."""
    try:
        import torchao  # noqa: F401
    except ImportError:
        raise ConfigError(f"backend=int8 needs torchao (PT2E quantisation): {INSTALL}") from None


def quantize_int8(module: nn.Module, example: Tensor, calibration: Iterable[Tensor]) -> nn.Module:
    """``module`` (eval mode) quantised to int8 for batches shaped as ``example``, its activation ranges observed
    on the ``calibration`` batches (any size each)."""
    require_torchao()
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    try:
        program = torch.export.export(module.eval(), (example,), strict=True)
    except Exception as err:  # torch.export raises many types, each with a long explanation
        what = type(module).__name__
        raise ConfigError(f"backend=int8: torch.export cannot capture {what} ({first_line(err)})") from None
    # Functional ops, then unused ones removed: a backbone stage computed but not read (YOLO v1 reads stage −2)
    # would leave a pattern without an output, which the quantiser cannot annotate.
    exported = program.run_decompositions({}).module()
    exported.graph.eliminate_dead_code()
    exported.recompile()
    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(exported, quantizer)
    observe = FixedBatch(prepared, len(example), channels_last=example.is_contiguous(memory_format=torch.channels_last))
    seen = 0
    with torch.no_grad():
        for images in calibration:
            observe(images)
            seen += len(images)
    if not seen:
        raise ConfigError("backend=int8: no calibration images (the activation ranges come from them)")
    return convert_pt2e(prepared)
