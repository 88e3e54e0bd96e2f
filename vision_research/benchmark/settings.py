"""The settings of ``vr benchmark`` (:class:`BenchmarkSettings`) and their checks: the values, the device and the
model names to measure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..errors import ConfigError, unknown_name_error

OURS = "vision_research"
LIBRARIES = ("torchvision", "timm")
MODES = ("inference", "train", "both")
DEVICES = ("cpu", "cuda")
PRECISION_ALIASES = {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}  # alias: speed.PRECISIONS
GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class BenchmarkSettings:
    """What is measured and how; :meth:`resolved` checks the values and fills in ``auto`` and the defaults."""

    batch_size: int = 32
    image_size: int | None = None  # None: each model's default_cfg["input_size"]
    num_classes: int = 1000
    mode: str = "both"  # inference | train | both
    precision: str = "auto"  # 32-true | bf16-mixed | 16-mixed | auto (aliases 32, bf16, 16)
    channels_last: bool = True
    compile: bool = False
    warmup: int = 3
    steps: int = 10
    rounds: int = 3
    threads: int | None = None  # None: leave torch's setting
    device: str | None = None  # None: cuda if available, else cpu
    seed: int = 0

    def resolved(self) -> BenchmarkSettings:
        """These settings checked, with device, precision and threads made concrete; else one ``ConfigError``."""
        import torch

        from ..speed import check_precision, resolve_precision

        for name, minimum in (("batch_size", 1), ("num_classes", 1), ("warmup", 0), ("steps", 1), ("rounds", 1)):
            _check_at_least(name, getattr(self, name), minimum)
        for name in ("image_size", "threads"):
            if getattr(self, name) is not None:
                _check_at_least(name, getattr(self, name), 1)
        if self.mode not in MODES:
            raise ConfigError(f"mode {self.mode!r}: choose one of {', '.join(MODES)}")
        device = resolve_device(self.device)
        precision = PRECISION_ALIASES.get(str(self.precision), str(self.precision))
        precision = check_precision(resolve_precision(precision, accelerator=device))
        threads = self.threads or torch.get_num_threads()
        return replace(self, device=device, precision=precision, threads=threads)

    @property
    def modes(self) -> tuple[str, ...]:
        """The measured modes, inference first."""
        return ("inference", "train") if self.mode == "both" else (self.mode,)


def _check_at_least(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer ≥ {minimum}; got {value!r}")


def resolve_device(device: str | None) -> str:
    """``cpu`` or ``cuda``; None picks cuda when available; cuda without a GPU is a ``ConfigError``."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in DEVICES:
        raise ConfigError(f"device {device!r}: choose one of {', '.join(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda': no CUDA GPU is available here (use --device cpu)")
    return device


# --- model names ------------------------------------------------------------------------------------------------


def expand_model_names(patterns: Sequence[str]) -> list[str]:
    """Model names from names and globs (``'resnet*'``, ``'timm:resnet1*'``), in order, without repeats."""
    from ..models.registry import MODELS, TIMM_PREFIX, list_models

    names: list[str] = []
    for pattern in patterns:
        if GLOB_CHARACTERS & set(pattern):
            matched = list_models(pattern)
            if not matched:
                raise ConfigError(f"no model matches '{pattern}' (see vr models)")
            names.extend(matched)
        elif pattern.startswith(TIMM_PREFIX):
            _check_timm_name(pattern[len(TIMM_PREFIX) :])
            names.append(pattern)
        else:
            MODELS.get(pattern)  # an unknown name raises, with close matches
            names.append(pattern)
    return list(dict.fromkeys(names))


def _check_timm_name(name: str) -> None:
    import timm

    if not timm.is_model(name):
        raise unknown_name_error("timm model", name, timm.list_models())
