"""Fast defaults that are safe to turn on: mixed precision the hardware runs natively, channels-last memory.

``trainer.precision: auto`` (configs/trainer/default.yaml) resolves here, once, to a Lightning precision string:
bf16 autocast on GPUs that support it (fp16 with loss scaling on older ones) and on CPUs with native bf16
instructions (AVX512-BF16 or AMX), full fp32 everywhere else. ``vr benchmark`` shows the effect of each choice.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from .errors import ConfigError

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX tiles), where bf16 autocast pays off."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def uses_cuda(accelerator: str) -> bool:
    """Whether Lightning's ``accelerator`` setting runs on a CUDA GPU here."""
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def resolve_precision(precision: str | int, accelerator: str = "auto") -> str:
    """``auto`` → the fastest safe precision for ``accelerator`` on this machine; anything else is kept (as text)."""
    if str(precision) != "auto":
        return str(precision)
    if uses_cuda(accelerator):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_native_bf16() else "32-true"


def check_precision(precision: str) -> str:
    """``precision`` if it is one ``vr benchmark`` runs, else a ``ConfigError`` listing the choices."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)} (or auto)")
    return precision


def to_channels_last(module: nn.Module) -> nn.Module:
    """``module`` with its 4-D weights in NHWC order (conv kernels run faster on oneDNN and cuDNN that way)."""
    return module.to(memory_format=torch.channels_last)


class SpeedOptions(Callback):
    """Puts the task's weights in channels-last order and optionally compiles it, before fitting or evaluating.

    ``channels_last`` is the framework's default (``speed.channels_last``); inputs need no conversion, since a
    convolution whose weights are channels-last gives channels-last outputs. ``torch_compile`` (``speed.torch_compile``)
    wraps the module's forward with ``torch.compile`` in place (``nn.Module.compile``), so checkpoints keep their
    key names.
    """

    def __init__(self, channels_last: bool = True, torch_compile: bool = False) -> None:
        self.channels_last = channels_last
        self.torch_compile = torch_compile

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.channels_last:
            to_channels_last(pl_module)
        if self.torch_compile and getattr(pl_module, "_compiled_call_impl", None) is None:
            pl_module.compile()


# Keys of the ``speed`` node renamed since, old → new: older runs' configs still say ``compile``.
RENAMED_SPEED_KEYS = {"compile": "torch_compile"}


def speed_options(speed: Mapping[str, Any] | None) -> SpeedOptions:
    """The callback for a run's ``speed`` config node; keys a run predates take their defaults, keys renamed since
    (``compile``) are read under their new name, keys of options since removed (``flush_denormal``) are ignored."""
    known = inspect.signature(SpeedOptions).parameters
    options = {RENAMED_SPEED_KEYS.get(key, key): value for key, value in dict(speed or {}).items()}
    return SpeedOptions(**{key: value for key, value in options.items() if key in known})
