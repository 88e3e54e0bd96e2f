"""Load local checkpoints into a model — never a download.

``load_pretrained(model, path_or_state_dict, source="native" | "torchvision" | "timm")`` accepts a raw
state dict, a ``.pt``/``.pth``/``.ckpt`` file (Lightning checkpoints included) or a ``.safetensors``
file. Keys are aligned across the usual wrappers (``module.`` from DDP, ``_orig_mod.`` from torch.compile,
``model.`` from our tasks and the timm adapter). The classifier is re-initialised when the class count
differs; the first conv is adapted when ``in_chans`` differs (timm's rule, generalised to any source
channel count). Any other shape mismatch means another architecture and is an error naming the key.

A torchvision or timm state dict is matched by name where our modules carry the reference's names, else
by position (both networks register their tensors in the same order; every shape is checked). A family
whose order differs defines ``remap_state_dict(state_dict, source) -> state_dict | None`` on its model
class (None: this checkpoint needs no special mapping, use the default).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..checkpoints import safe_load
from ..errors import ConfigError, DataError

log = logging.getLogger(__name__)
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")


@dataclass
class LoadReport:
    """What ``load_pretrained`` did with each key."""

    mapped: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)  # first conv, other in_chans
    reinitialised: list[str] = field(default_factory=list)  # classifier, other class count
    missing: list[str] = field(default_factory=list)  # in the model, not in the checkpoint
    ignored: list[str] = field(default_factory=list)  # in the checkpoint, not in the model

    def __str__(self) -> str:
        parts = [f"{len(self.mapped)} mapped"]
        for label, keys in (
            ("adapted (in_chans)", self.adapted),
            ("re-initialised (head)", self.reinitialised),
            ("missing", self.missing),
            ("ignored", self.ignored),
        ):
            if keys:
                parts.append(f"{len(keys)} {label}: {', '.join(keys[:6])}{', ...' if len(keys) > 6 else ''}")
        return "; ".join(parts)


def read_state_dict(source: str | Path | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of a state dict given directly or stored in a local file (a checkpoint's ``state_dict`` too)."""
    state = dict(source) if isinstance(source, Mapping) else _read_weights_file(Path(source).expanduser())
    for container in ("state_dict", "model", "state_dict_ema"):
        if container in state and isinstance(state[container], Mapping):
            state = dict(state[container])
            break
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        where = "the state dict given" if isinstance(source, Mapping) else str(Path(source).expanduser())
        raise DataError(
            f"{where}: no tensors found (expected a state dict, parameter names mapped to tensors, or a checkpoint "
            "holding one under 'state_dict', 'model' or 'state_dict_ema')"
        )
    return tensors


def _read_weights_file(path: Path) -> Mapping:
    """The mapping stored in a ``.safetensors`` or torch file; anything else in the file is a ``DataError``."""
    if not path.is_file():
        raise DataError(f"pretrained weights not found: '{path}' (a local file; nothing is downloaded)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:  # safetensors raises several types for a corrupt file
            raise DataError(f"cannot read weights from '{path}': {err}") from err
    state = safe_load(path)
    if not isinstance(state, Mapping):
        raise DataError(
            f"{path}: holds a {type(state).__name__}, not a state dict (a mapping of parameter names to tensors)"
        )
    return state


def _strip_wrappers(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def adapt_first_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """A first-conv kernel [O, I, k, k] for ``in_chans`` inputs: summed over I for one channel, else the I
    kernels tiled over the new channels and scaled by I / in_chans. For I = 3 this is timm's
    ``adapt_input_conv``; timm refuses other I (a grey-scale source, say), which this accepts."""
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-in_chans // weight.shape[1])
    return weight.repeat(1, repeats, 1, 1)[:, :in_chans] * (weight.shape[1] / in_chans)


SOURCES = ("native", "torchvision", "timm")


def map_by_position(
    checkpoint: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], classifier: str
) -> dict[str, torch.Tensor]:
    """Rename a reference state dict to ``target``'s keys by order: body to body, classifier to classifier."""
    head = [k for k in target if classifier and _strip_wrappers(k).startswith(f"{classifier}.")]
    body = [k for k in target if k not in head]
    source = list(checkpoint.items())
    if len(source) != len(target):
        raise ConfigError(
            f"the reference state dict has {len(source)} tensors, the model {len(target)}: not the same "
            "architecture (or the family needs a remap_state_dict)"
        )
    mapped = {}
    for ours, (theirs, tensor) in zip(body + head, source, strict=True):
        if ours in body and tensor.shape != target[ours].shape:
            raise ConfigError(
                f"by position, reference '{theirs}' {tuple(tensor.shape)} would load into '{ours}' "
                f"{tuple(target[ours].shape)}: the layouts differ"
            )
        mapped[_strip_wrappers(ours)] = tensor
    return mapped


def load_pretrained(
    model: nn.Module,
    path_or_state_dict: str | Path | Mapping[str, torch.Tensor],
    source: str = "native",
    new_classifier: bool = False,
) -> LoadReport:
    """Copy matching weights from a local file or state dict into ``model`` in place and report what happened.

    ``source`` says whose layout the weights follow: ``native`` (this framework's, or a Lightning checkpoint
    of it), ``torchvision`` or ``timm``. The classifier keeps its fresh weights for another class count, and with
    ``new_classifier`` also for the same count (another label set).
    """
    if source not in SOURCES:
        raise ConfigError(f"source={source!r}: choose one of {', '.join(SOURCES)}")
    checkpoint = {_strip_wrappers(k): v for k, v in read_state_dict(path_or_state_dict).items()}
    target = model.state_dict()
    cfg = getattr(model, "default_cfg", {}) or {}
    first_conv = _strip_wrappers(cfg.get("first_conv") or "")
    classifier = _strip_wrappers(cfg.get("classifier") or "")
    # The main classifier and any auxiliary ones (GoogLeNet) are re-initialised for another class count.
    heads = tuple(f"{_strip_wrappers(h)}." for h in (classifier, *cfg.get("aux_classifiers", ())) if h)
    if source != "native":
        remap = getattr(model, "remap_state_dict", None)
        remapped = remap(checkpoint, source) if remap is not None else None
        if remapped is not None:
            checkpoint = {_strip_wrappers(k): v for k, v in remapped.items()}
        elif not {_strip_wrappers(k) for k in target} <= set(checkpoint):
            checkpoint = map_by_position(checkpoint, target, classifier)
    report, new_state = LoadReport(), {}
    for key, value in target.items():
        plain = _strip_wrappers(key)
        if plain not in checkpoint:
            report.missing.append(key)
            continue
        src = checkpoint[plain]
        if new_classifier and heads and plain.startswith(heads):
            report.reinitialised.append(key)
        elif src.shape == value.shape:
            new_state[key] = src.to(value.dtype)
            report.mapped.append(key)
        elif first_conv and plain == f"{first_conv}.weight" and src.shape[0] == value.shape[0]:
            new_state[key] = adapt_first_conv(src, value.shape[1]).to(value.dtype)
            report.adapted.append(key)
        elif heads and plain.startswith(heads):
            report.reinitialised.append(key)
        else:
            raise ConfigError(
                f"weights do not fit the model: '{key}' has shape {tuple(value.shape)} in "
                f"{type(model).__name__} but {tuple(src.shape)} in the checkpoint (another architecture?)"
            )
    known = {_strip_wrappers(k) for k in target}
    report.ignored = sorted(k for k in checkpoint if k not in known)
    if not report.mapped:
        raise ConfigError(f"no weight of the checkpoint matches {type(model).__name__}: {report}")
    model.load_state_dict(new_state, strict=False)
    log.info("loaded pretrained weights into %s: %s", type(model).__name__, report)
    return report
