"""Optimizers and schedules: learning rates equal the formulas, step by step."""

import math

import pytest
import torch

from vision_research.errors import ConfigError
from vision_research.optim import build_optimizer, build_scheduler


def lrs(scheduler, optimizer, steps):
    seen = []
    for _ in range(steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def test_sgd_is_plain_momentum_unless_nesterov_and_skips_decay_on_biases_and_norms():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    opt = build_optimizer(net, "sgd", lr=0.1, weight_decay=1e-4, momentum=0.9)
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"] is False
    decay = {g["weight_decay"]: sum(p.numel() for p in g["params"]) for g in opt.param_groups}
    assert decay == {0.0: 2 + 2 + 2, 1e-4: 18}  # conv bias, bn weight+bias undecayed; conv weight decayed
    assert build_optimizer(net, "sgd", lr=0.1, nesterov=True).defaults["nesterov"] is True
    assert isinstance(build_optimizer(net, "adamw", lr=1e-3), torch.optim.AdamW)


def test_cosine_with_linear_warmup_follows_the_formula():
    net = torch.nn.Linear(2, 2)
    opt = build_optimizer(net, "sgd", lr=1.0)
    total, epochs, warmup = 100, 10, 20  # 10 steps per epoch, 2 warm-up epochs
    sched = build_scheduler(
        opt, total, epochs, name="cosine", warmup_epochs=2, warmup_start_factor=0.1, min_lr_ratio=0.0
    )
    seen = lrs(sched, opt, total)
    for step in range(warmup):
        assert seen[step] == pytest.approx(0.1 + 0.9 * step / warmup)
    for step in range(warmup, total):
        t = step - warmup
        assert seen[step] == pytest.approx(0.5 * (1 + math.cos(math.pi * t / (total - warmup))), abs=1e-6)


def test_step_schedule_decays_at_the_epochs_given():
    opt = build_optimizer(torch.nn.Linear(2, 2), "sgd", lr=1.0)
    sched = build_scheduler(opt, 60, 6, name="step", step_epochs=[2, 4], gamma=0.1)
    seen = lrs(sched, opt, 60)
    assert seen[19] == pytest.approx(1.0) and seen[20] == pytest.approx(0.1)
    assert seen[39] == pytest.approx(0.1) and seen[40] == pytest.approx(0.01)


def test_onecycle_peaks_at_lr_after_the_warmup_fraction():
    opt = build_optimizer(torch.nn.Linear(2, 2), "adamw", lr=0.01)
    sched = build_scheduler(opt, 100, 10, name="onecycle", pct_start=0.3)
    seen = lrs(sched, opt, 100)
    assert max(seen) == pytest.approx(0.01) and seen.index(max(seen)) in (29, 30)
    assert seen[0] == pytest.approx(0.01 / 25) and seen[-1] < 1e-5


def test_none_and_errors():
    opt = build_optimizer(torch.nn.Linear(2, 2), "adam", lr=0.01)
    assert build_scheduler(opt, 10, 1, name="none") is None
    with pytest.raises(ConfigError, match="unknown scheduler 'cosin'. Did you mean: cosine"):
        build_scheduler(opt, 10, 1, name="cosin")
    with pytest.raises(ConfigError, match="unknown optimizer 'adamm'"):
        build_optimizer(torch.nn.Linear(2, 2), "adamm")
    with pytest.raises(ConfigError, match="lr must be > 0"):
        build_optimizer(torch.nn.Linear(2, 2), "sgd", lr=0)


def test_poly_schedule_follows_the_formula():
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(model, name="sgd", lr=0.1)
    sched = build_scheduler(opt, 50, 5, name="poly", power=0.9)
    values = lrs(sched, opt, 50)
    expected = [0.1 * (1 - t / 50) ** 0.9 for t in range(50)]
    assert values == pytest.approx(expected, rel=1e-9, abs=1e-12)
