"""Published weights by tag: ``torchvision:<WeightsEnum name>`` and ``timm:<model>.<tag>``.

``torchvision:ResNet50_Weights.IMAGENET1K_V2`` is fetched by torch's hub machinery
(``torch.hub.load_state_dict_from_url``) into ``$TORCH_HOME/hub/checkpoints`` (default
``~/.cache/torch/hub/checkpoints``) under the URL's file name (``resnet50-11ad3fa6.pth``);
``timm:resnet50.a1_in1k`` by timm's (``load_state_dict_from_hf``, the model's ``pretrained_cfg.hf_hub_id``) into
the Hugging Face cache ``$HF_HOME/hub`` (default ``~/.cache/huggingface/hub``; ``vision_research`` sets
``HF_HUB_OFFLINE=1`` unless it is set, so timm weights come from that cache unless ``HF_HUB_OFFLINE=0``). A file
already cached is read without the network; one missing where it cannot be downloaded is a one-line ``DataError``
naming the file and the folder to put it in. The state dict is then mapped onto our architecture by
:func:`~vision_research.models.weights.load_pretrained` with the source the prefix names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from ..errors import ConfigError, DataError, close_matches
from .weights import LoadReport, load_pretrained, read_state_dict

TAG_SOURCES = ("torchvision", "timm")


def tag_source(pretrained: Any) -> str | None:
    """``torchvision`` or ``timm`` for a tag with that prefix, else None (a local file or a state dict)."""
    if isinstance(pretrained, str):
        prefix, sep, _ = pretrained.partition(":")
        if sep and prefix in TAG_SOURCES:
            return prefix
    return None


def _one_line(err: BaseException, limit: int = 200) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def torchvision_weights(name: str) -> Any:
    """The torchvision ``WeightsEnum`` member called ``name`` (``ResNet50_Weights.IMAGENET1K_V2``); an unknown name
    is a ``ConfigError`` suggesting close ones."""
    from torchvision.models import get_weight

    try:
        return get_weight(name)
    except (KeyError, ValueError, AttributeError):
        raise _unknown_torchvision_weights(name) from None


def _unknown_torchvision_weights(name: str) -> ConfigError:
    """The error for an unknown weights name, with the close names of torchvision's registry."""
    from torchvision.models import get_model_weights, list_models

    enums = {}
    for model in list_models():
        try:
            enum = get_model_weights(model)
        except (KeyError, ValueError):  # pragma: no cover - a model registered without weights
            continue
        enums[enum.__name__] = enum
    enum_name, _, member = name.partition(".")
    if enum_name in enums:
        members = [m.name for m in enums[enum_name]]
        close = sorted(close_matches(member, members)) or members
        hint = f": did you mean {', '.join([f'{enum_name}.{close[0]}', *close[1:]])} (or {enum_name}.DEFAULT)?"
    else:
        if name.lower() in list_models():  # a model name: its weights
            close = [f"{w.__class__.__name__}.{w.name}" for w in get_model_weights(name.lower())]
        else:
            close = [
                f"{e}.{member if member in enums[e].__members__ else next(iter(enums[e])).name}"
                for e in close_matches(enum_name, enums)
            ]
        hint = f": did you mean {', '.join(close)}?" if close else ""
    return ConfigError(
        f"unknown torchvision weights '{name}'{hint} (torchvision.models.list_models() names the models, "
        "get_model_weights(<model>) their weights)"
    )


def timm_pretrained_cfg(name: str) -> Any:
    """timm's ``pretrained_cfg`` of ``<model>.<tag>`` (a bare model name means its default tag); an unknown name
    is a ``ConfigError`` suggesting close ones from ``timm.list_pretrained()``."""
    import timm
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(name, allow_unregistered=False)
    except RuntimeError:
        cfg = None
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        close = close_matches(name, timm.list_pretrained(), n=6)
        hint = f": did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown timm pretrained tag '{name}'{hint} (timm.list_pretrained('<pattern>') lists them)")
    return cfg


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache as the environment says now (huggingface_hub reads it once, at import)."""
    cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if cache:
        return Path(os.path.expandvars(cache)).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def _from_url(url: str, what: str) -> tuple[dict[str, torch.Tensor], Path]:
    """A state dict from torch's hub cache (``<hub dir>/checkpoints/<URL file name>``), downloaded there if absent."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    file = folder / os.path.basename(urlparse(url).path)
    cached = file.is_file()
    try:
        state = torch.hub.load_state_dict_from_url(
            url, model_dir=str(folder), map_location="cpu", check_hash=True, weights_only=True
        )
    except Exception as err:  # URLError/OSError offline, RuntimeError for a bad hash, unpickling errors
        if cached:
            raise DataError(f"{what}: cannot read {file}: {_one_line(err)} (delete it to download it again)") from None
        raise DataError(
            f"{what}: {file.name} is not in {folder} and cannot be downloaded ({_one_line(err)}); put {file.name} "
            f"there (fetch it from {url}) or set model.pretrained to a local copy"
        ) from None
    return state, file


def _from_hf(cfg: Any, what: str) -> tuple[dict[str, torch.Tensor], str]:
    """A state dict from the Hugging Face cache (``models--<org>--<name>``), downloaded there if absent and online."""
    from huggingface_hub import constants
    from timm.models import load_state_dict_from_hf

    cache, repo = hf_cache_dir(), cfg.hf_hub_id
    options = {"filename": cfg.hf_hub_filename} if cfg.hf_hub_filename else {}
    try:
        state = load_state_dict_from_hf(repo, weights_only=True, cache_dir=cache, **options)
    except Exception as err:  # LocalEntryNotFoundError offline, HTTP / connection errors online
        reason = "offline: HF_HUB_OFFLINE=1" if constants.HF_HUB_OFFLINE else _one_line(err)
        folder = "models--" + repo.split("@")[0].replace("/", "--")
        raise DataError(
            f"{what}: {repo} is not in the Hugging Face cache {cache} and cannot be downloaded ({reason}); put "
            f"{folder} there (`hf download {repo}` fills it where there is a network) or download "
            f"model.safetensors from https://huggingface.co/{repo} and set model.pretrained=<that file> "
            "model.pretrained_source=timm"
        ) from None
    return state, f"{repo} in {cache}"


def fetch_pretrained(tag: str) -> tuple[dict[str, torch.Tensor], str, str]:
    """The state dict of a ``torchvision:`` / ``timm:`` tag, its layout (``torchvision`` / ``timm``) and where it
    was read from."""
    source = tag_source(tag)
    name = tag.partition(":")[2]
    if source == "torchvision":
        weights = torchvision_weights(name)
        state, file = _from_url(weights.url, f"torchvision weights {name}")
        return state, source, str(file)
    if source == "timm":
        cfg = timm_pretrained_cfg(name)
        full = f"{cfg.architecture}.{cfg.tag}" if cfg.tag else cfg.architecture
        what = f"timm weights {full}"
        if cfg.hf_hub_id:
            state, where = _from_hf(cfg, what)
            return state, source, where
        if cfg.url:
            state, file = _from_url(cfg.url, what)
            return state, source, str(file)
        return read_state_dict(cfg.file), source, str(cfg.file)
    raise ConfigError(f"pretrained={tag!r} is no tag: use torchvision:<WeightsEnum name> or timm:<model>.<tag>")


def load_weights(
    model: nn.Module,
    pretrained: str | Path | Mapping[str, torch.Tensor],
    source: str = "native",
    new_classifier: bool = False,
) -> tuple[LoadReport, str]:
    """Load a local file, a state dict or a tag into ``model`` (the tag's prefix is its source; ``source`` is for
    the others); returns what ``load_pretrained`` did (``new_classifier``: see there) and where the weights came
    from."""
    implied = tag_source(pretrained)
    if implied is None:
        where = "the state dict given" if isinstance(pretrained, Mapping) else str(pretrained)
        return load_pretrained(model, pretrained, source, new_classifier), where
    if source not in ("native", implied):
        raise ConfigError(f"pretrained={pretrained} holds {implied} weights, not pretrained_source={source}")
    state, implied, where = fetch_pretrained(str(pretrained))
    return load_pretrained(model, state, implied, new_classifier), f"{pretrained} ({where})"


def pretrained_class_names(tag: Any) -> list[str] | None:
    """The class names a tag's weights were trained on (torchvision's ``meta["categories"]``, timm's label names or
    ImageNet subset), None for a local file or weights without names."""
    source, name = tag_source(tag), str(tag).partition(":")[2]
    if source == "torchvision":
        return list(torchvision_weights(name).meta.get("categories") or []) or None
    if source == "timm":
        from timm.data import ImageNetInfo, infer_imagenet_subset

        cfg = timm_pretrained_cfg(name)
        if cfg.label_names:
            return list(cfg.label_names)
        subset = infer_imagenet_subset(cfg)
        if subset:
            return [d.split(",")[0].strip() for d in ImageNetInfo(subset).label_descriptions()]
    return None
