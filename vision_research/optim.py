"""Optimizers (timm's factory) and per-step learning-rate schedules (torch's schedulers), from config.

``optimizer``: ``{name: sgd | adam | adamw | <any timm optimizer>, lr, weight_decay, momentum, nesterov,
backbone_lr_mult, layer_decay}``. Biases and normalisation weights get no weight decay (timm's
``filter_bias_and_bn``). ``backbone_lr_mult`` (≠ 1) or ``layer_decay`` (set) give a pretrained backbone its own,
named parameter groups (:func:`layer_parameter_groups`): fine-tuning at a lower learning rate, lower still for the
earlier stages (layer-wise decay, as in ELECTRA and BEiT; timm's ``param_groups_layer_decay``).
``scheduler``: ``{name: none | cosine | step | onecycle, warmup_epochs, warmup_start_factor, min_lr_ratio,
step_epochs, gamma, pct_start}``; every schedule is stepped per optimizer step, so warm-up is smooth.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    LambdaLR,
    LinearLR,
    LRScheduler,
    MultiStepLR,
    OneCycleLR,
    PolynomialLR,
    SequentialLR,
)

from .errors import ConfigError, unknown_name_error

SCHEDULERS = ("none", "cosine", "step", "onecycle", "poly")


def backbone_stages(backbone: nn.Module) -> list[str]:
    """The names, inside ``backbone``, of the modules ending its stages (``feature_info[i]["module"]``), finest first.

    A name that is not a sub-module of ``backbone`` itself is looked up one level down, in the single child that
    holds it (``timm:`` backbones wrap the timm model, whose ``feature_info`` names its own modules). A backbone
    without ``feature_info`` has no stages: [].
    """
    names = []
    for info in getattr(backbone, "feature_info", None) or []:
        name = info["module"]
        if not _has_submodule(backbone, name):
            holders = [child for child, _ in backbone.named_children() if _has_submodule(backbone, f"{child}.{name}")]
            if len(holders) != 1:
                raise ConfigError(f"feature_info names module '{name}', which {type(backbone).__name__} does not hold")
            name = f"{holders[0]}.{name}"
        names.append(name)
    return names


def classifier_modules(backbone: nn.Module) -> list[str]:
    """The modules of ``backbone`` its ``default_cfg["classifier"]`` names (one name or several) and it holds."""
    names = (getattr(backbone, "default_cfg", None) or {}).get("classifier") or ()
    names = [names] if isinstance(names, str) else list(names)
    return [name for name in names if _has_submodule(backbone, name)]


def backbone_layers(backbone: nn.Module, stages: list[str] | None) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """``backbone``'s parameters (frozen ones included) by layer, earliest first, with their names in ``backbone``.

    Layers are ``stem``, ``stage0`` … ``stage{S-1}`` for the ``S`` stage modules named in ``stages`` (the modules
    *ending* the stages: ``feature_info``), and ``head``, the backbone's own classifier (:func:`classifier_modules`).
    A parameter belongs to the stage whose module holds it, else, in registration order (the forward order in the
    framework's models), to the first stage whose module comes after it: the layers leading to a stage's output
    (a VGG block ends at its pooling layer, EfficientNet's ``blocks.3`` leads to the stage ending at ``blocks.4``,
    a DenseNet transition to the next dense block). The ``stem`` is what comes before a first stage module that
    has parameters of its own (ResNet's ``conv1``/``bn1`` before ``layer1``); what comes after the last stage
    module (EfficientNet's ``conv_head``) belongs to the last stage. Without stages every parameter outside the
    head is in one layer, ``all``. Layers without parameters are left out.
    """
    assign = layer_assigner(backbone, stages)
    layers: dict[str, list[tuple[str, nn.Parameter]]] = {}
    for name, parameter in backbone.named_parameters():
        layers.setdefault(assign(name.rpartition(".")[0]), []).append((name, parameter))
    keys = ["stem", *(f"stage{i}" for i in range(len(stages or []))), "all", "head"]
    return {key: layers[key] for key in keys if key in layers}


def layer_assigner(backbone: nn.Module, stages: list[str] | None) -> Callable[[str], str]:
    """A function from the name of a module of ``backbone`` to its layer (:func:`backbone_layers`)."""
    head = classifier_modules(backbone)
    stages = list(stages or [])
    for name in stages:
        if not _has_submodule(backbone, name):
            raise ConfigError(f"stage module '{name}' is not in {type(backbone).__name__}")
    order = {name: index for index, (name, _) in enumerate(backbone.named_modules())}
    stage_ends = [max(order[m] for m in order if _within(m, stage)) for stage in stages]
    has_stem = bool(stages) and any(True for _ in backbone.get_submodule(stages[0]).parameters())

    def layer_of(module_name: str) -> str:
        if any(_within(module_name, name) for name in head):
            return "head"
        if not stages:
            return "all"
        for index, stage in enumerate(stages):
            if _within(module_name, stage):
                return f"stage{index}"
        passed = sum(end < order[module_name] for end in stage_ends)  # stages wholly before this module
        if passed == 0 and has_stem:
            return "stem"
        return f"stage{min(passed, len(stages) - 1)}"

    return layer_of


def _has_submodule(module: nn.Module, name: str) -> bool:
    try:
        module.get_submodule(name)
    except AttributeError:
        return False
    return True


def _within(module_name: str, ancestor: str) -> bool:
    return module_name == ancestor or module_name.startswith(f"{ancestor}.")


def layer_parameter_groups(
    model: nn.Module,
    backbone: nn.Module | None,
    stages: list[str] | None,
    lr: float,
    weight_decay: float,
    backbone_lr_mult: float = 1.0,
    layer_decay: float | None = None,
    filter_bias_and_bn: bool = True,
) -> list[dict[str, Any]]:
    """Named parameter groups of ``model``: ``head`` (every parameter outside ``backbone``, and the backbone's own
    classifier) at ``lr``; the backbone's layers (:func:`backbone_layers`) at ``lr`` · ``backbone_lr_mult`` ·
    ``layer_decay``^(S−1−i) for stage i of S, the stem at one more power (BEiT's layer-wise decay, as timm's
    ``param_groups_layer_decay`` applies it). With weight decay, each layer is split into ``<name>`` and
    ``<name>/no_decay`` (biases, 1-D parameters, the model's ``no_weight_decay()``), as timm does.

    Every parameter of ``model`` is in exactly one group, frozen ones included: unfreezing one later needs no new
    group, and until it has a gradient torch's optimizers skip it (no step, no decay, no momentum).
    """
    if backbone is None:
        raise ConfigError("optimizer.backbone_lr_mult / layer_decay need the task's backbone (pretrained_module)")
    if layer_decay is not None and not stages:
        raise ConfigError("optimizer.layer_decay needs the backbone's stages (its feature_info)")
    names = {id(p): n for n, p in model.named_parameters()}
    backbone_names = {id(p): n for n, p in backbone.named_parameters()}
    if not backbone_names.keys() <= names.keys():
        raise ConfigError(f"the backbone ({type(backbone).__name__}) is not part of {type(model).__name__}")
    layers = backbone_layers(backbone, stages)
    num_stages, decay = len(stages or []), 1.0 if layer_decay is None else layer_decay
    scales = {f"stage{i}": decay ** (num_stages - 1 - i) for i in range(num_stages)}
    scales.update(stem=decay**num_stages, all=1.0)
    head_ids = {id(p) for _, p in layers.pop("head", [])}
    head = [(n, p) for n, p in model.named_parameters() if id(p) not in backbone_names or id(p) in head_ids]
    named_layers = [("head", lr, head)]
    for key in reversed(list(layers)):  # latest (highest learning rate) first
        group_name = "backbone" if key == "all" else f"backbone.{key}"
        parameters = [(names[id(p)], p) for _, p in layers[key]]
        named_layers.append((group_name, lr * backbone_lr_mult * scales[key], parameters))
    no_decay_names = set(getattr(model, "no_weight_decay", lambda: ())())
    split = bool(weight_decay) and filter_bias_and_bn
    groups = []
    for group_name, group_lr, parameters in named_layers:
        decayed = [p for n, p in parameters if not (split and _no_decay(n, p, no_decay_names))]
        undecayed = [p for n, p in parameters if split and _no_decay(n, p, no_decay_names)]
        if decayed:
            groups.append({"name": group_name, "params": decayed, "lr": group_lr, "weight_decay": weight_decay})
        if undecayed:
            groups.append({"name": f"{group_name}/no_decay", "params": undecayed, "lr": group_lr, "weight_decay": 0.0})
    return groups


def _no_decay(name: str, parameter: nn.Parameter, no_weight_decay: set[str]) -> bool:
    return parameter.ndim <= 1 or name.endswith(".bias") or name in no_weight_decay


def build_optimizer(
    model: torch.nn.Module,
    name: str = "adamw",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    nesterov: bool = False,
    backbone_lr_mult: float = 1.0,
    layer_decay: float | None = None,
    backbone: nn.Module | None = None,
    stages: list[str] | None = None,
    **extra: Any,
) -> torch.optim.Optimizer:
    """An optimizer over ``model``'s trainable parameters (frozen ones are left out).

    With ``backbone_lr_mult`` ≠ 1 or a ``layer_decay``, the parameters are in the named groups of
    :func:`layer_parameter_groups` instead (frozen ones included): ``backbone`` is the pretrained module inside
    ``model`` (a task's ``pretrained_module()``), ``stages`` the names of its stage modules (:func:`backbone_stages`).
    """
    from timm.optim import create_optimizer_v2, list_optimizers

    name = name.lower()
    if name not in list_optimizers():
        raise unknown_name_error("optimizer", name, list_optimizers())
    if lr <= 0:
        raise ConfigError(f"optimizer.lr must be > 0; got {lr}")
    if backbone_lr_mult <= 0:
        raise ConfigError(
            f"optimizer.backbone_lr_mult must be > 0 (callbacks.finetune freezes); got {backbone_lr_mult}"
        )
    if layer_decay is not None and not 0 < layer_decay <= 1:
        raise ConfigError(f"optimizer.layer_decay must be in (0, 1] or null; got {layer_decay}")
    if name == "sgd":
        extra["nesterov"] = nesterov  # timm's "sgd" would otherwise be Nesterov SGD
    params: nn.Module | list[dict[str, Any]] = model
    if backbone_lr_mult != 1.0 or layer_decay is not None:
        filter_bias_and_bn = extra.pop("filter_bias_and_bn", True)
        params = layer_parameter_groups(
            model, backbone, stages, lr, weight_decay, backbone_lr_mult, layer_decay, filter_bias_and_bn
        )
    return create_optimizer_v2(params, opt=name, lr=lr, weight_decay=weight_decay, momentum=momentum, **extra)


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    max_epochs: int,
    name: str = "cosine",
    warmup_epochs: float = 0.0,
    warmup_start_factor: float = 0.01,
    min_lr_ratio: float = 0.0,
    step_epochs: tuple[int, ...] | list[int] = (30, 60, 90),
    gamma: float = 0.1,
    pct_start: float = 0.3,
    power: float = 0.9,
) -> LRScheduler | None:
    """A per-step schedule over ``total_steps``; linear warm-up first when ``warmup_epochs`` > 0.

    ``cosine`` anneals to ``min_lr_ratio``·lr; ``step`` multiplies by ``gamma`` at each of ``step_epochs``;
    ``onecycle`` is Smith's 1cycle (its own warm-up: ``pct_start``, or the warm-up fraction if given);
    ``poly`` multiplies by (1 − t/T)^``power`` (DeepLab's schedule, common for segmentation).
    """
    if name not in SCHEDULERS:
        raise unknown_name_error("scheduler", name, SCHEDULERS)
    if name == "none":
        return None
    if total_steps < 1 or max_epochs < 1:
        raise ConfigError(f"a '{name}' schedule needs a finite run (trainer.max_epochs); got {max_epochs} epochs")
    steps_per_epoch = max(1, total_steps // max_epochs)
    warmup = min(int(round(warmup_epochs * steps_per_epoch)), total_steps - 1)
    if name == "onecycle":
        max_lrs = [group["lr"] for group in optimizer.param_groups]
        start = warmup / total_steps if warmup else pct_start
        return OneCycleLR(optimizer, max_lr=max_lrs, total_steps=total_steps, pct_start=start)
    base_lr = optimizer.param_groups[0]["lr"]
    if name == "cosine" and len({group["lr"] for group in optimizer.param_groups}) > 1:
        # Groups at different rates (a backbone's): each anneals to min_lr_ratio of its own rate, where
        # CosineAnnealingLR's single eta_min would raise the rates below it.
        span = total_steps - warmup

        def cosine(step: int) -> float:
            return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(step, span) / span))

        main: LRScheduler = LambdaLR(optimizer, cosine)
    elif name == "cosine":
        main = CosineAnnealingLR(optimizer, T_max=total_steps - warmup, eta_min=base_lr * min_lr_ratio)
    elif name == "poly":
        main = PolynomialLR(optimizer, total_iters=total_steps - warmup, power=power)
    else:
        milestones = [e * steps_per_epoch - warmup for e in step_epochs if e * steps_per_epoch > warmup]
        main = MultiStepLR(optimizer, milestones=milestones, gamma=gamma)
    if not warmup:
        return main
    ramp = LinearLR(optimizer, start_factor=warmup_start_factor, end_factor=1.0, total_iters=warmup)
    return SequentialLR(optimizer, [ramp, main], milestones=[warmup])
