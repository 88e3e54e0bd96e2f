"""Optimizers (timm's factory) and per-step learning-rate schedules (torch's schedulers), from config.

``optimizer``: ``{name: sgd | adam | adamw | <any timm optimizer>, lr, weight_decay, momentum, nesterov}``.
Biases and normalisation weights get no weight decay (timm's ``filter_bias_and_bn``).
``scheduler``: ``{name: none | cosine | step | onecycle, warmup_epochs, warmup_start_factor, min_lr_ratio,
step_epochs, gamma, pct_start}``; every schedule is stepped per optimizer step, so warm-up is smooth.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    LinearLR,
    LRScheduler,
    MultiStepLR,
    OneCycleLR,
    PolynomialLR,
    SequentialLR,
)

from .errors import ConfigError, unknown_name_error

SCHEDULERS = ("none", "cosine", "step", "onecycle", "poly")


def build_optimizer(
    model: torch.nn.Module,
    name: str = "adamw",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    nesterov: bool = False,
    **extra: Any,
) -> torch.optim.Optimizer:
    """An optimizer over ``model``'s trainable parameters (frozen ones are left out)."""
    from timm.optim import create_optimizer_v2, list_optimizers

    name = name.lower()
    if name not in list_optimizers():
        raise unknown_name_error("optimizer", name, list_optimizers())
    if lr <= 0:
        raise ConfigError(f"optimizer.lr must be > 0; got {lr}")
    if name == "sgd":
        extra["nesterov"] = nesterov  # timm's "sgd" would otherwise be Nesterov SGD
    return create_optimizer_v2(model, opt=name, lr=lr, weight_decay=weight_decay, momentum=momentum, **extra)


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
    if name == "cosine":
        main: LRScheduler = CosineAnnealingLR(optimizer, T_max=total_steps - warmup, eta_min=base_lr * min_lr_ratio)
    elif name == "poly":
        main = PolynomialLR(optimizer, total_iters=total_steps - warmup, power=power)
    else:
        milestones = [e * steps_per_epoch - warmup for e in step_epochs if e * steps_per_epoch > warmup]
        main = MultiStepLR(optimizer, milestones=milestones, gamma=gamma)
    if not warmup:
        return main
    ramp = LinearLR(optimizer, start_factor=warmup_start_factor, end_factor=1.0, total_iters=warmup)
    return SequentialLR(optimizer, [ramp, main], milestones=[warmup])
