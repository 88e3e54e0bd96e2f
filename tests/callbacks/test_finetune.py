"""Freeze-then-fine-tune (BackboneFreeze) and per-layer learning rates (build_optimizer's backbone groups)."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from tests.trainers import cpu_trainer as trainer
from vision_research.callbacks import BackboneFreeze
from vision_research.errors import ConfigError
from vision_research.models import create_model
from vision_research.optim import backbone_layers, backbone_stages, build_optimizer, build_scheduler
from vision_research.tasks import ImageClassifier

STAGES = ["layer1", "layer2", "layer3", "layer4"]


def make_task(**optimizer: Any) -> ImageClassifier:
    torch.manual_seed(0)
    options = {"name": "adamw", "lr": 1e-2, "weight_decay": 0.05, **optimizer}
    return ImageClassifier(
        "resnet18", num_classes=3, in_chans=3, model_options={"width_mult": 0.25}, optimizer=options, scheduler=None
    )


def loader() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.randn(12, 3, 32, 32, generator=generator), torch.arange(12) % 3
    return DataLoader(TensorDataset(images, labels), batch_size=4)


class Recorder(Callback):
    """The model's tensors (parameters and batch-norm buffers) when training starts and after each epoch, the
    parameters that had a gradient at each optimizer step of each epoch, and the frozen batch norms' mode."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []
        self.with_grad: dict[int, set[str]] = {}
        self.training_norms: dict[int, set[str]] = {}

    def _snapshot(self, pl_module: L.LightningModule) -> None:
        self.states.append({k: v.detach().clone() for k, v in pl_module.model.state_dict().items()})

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._snapshot(pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._snapshot(pl_module)

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        names = {n for n, p in pl_module.model.named_parameters() if p.grad is not None}
        self.with_grad.setdefault(trainer.current_epoch, set()).update(names)
        norms = {n for n, m in pl_module.model.named_modules() if isinstance(m, torch.nn.BatchNorm2d) and m.training}
        self.training_norms.setdefault(trainer.current_epoch, set()).update(norms)


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> set[str]:
    """The tensors under ``prefixes`` that differ between two snapshots (``num_batches_tracked`` included)."""
    return {k for k in before if k.startswith(prefixes) and not torch.equal(before[k], after[k])}


def under(state: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> set[str]:
    return {k for k in state if k.startswith(prefixes)}


BACKBONE = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")
HEAD = ("fc.",)


@pytest.mark.parametrize("optimizer", [{}, {"backbone_lr_mult": 0.1, "layer_decay": 0.5}], ids=["plain", "groups"])
def test_frozen_epoch_trains_only_the_head_then_the_backbone_follows(optimizer):
    task, recorder = make_task(**optimizer), Recorder()
    # A validation after every step: the frozen batch norms stay in eval mode through them.
    trainer(2, BackboneFreeze(1), recorder, val_check_interval=1, num_sanity_val_steps=0).fit(task, loader(), loader())
    start, after_frozen, after_unfrozen = recorder.states
    # Epoch 0: gradients and changes in the head only; weights, batch-norm statistics (and counters) unmoved,
    # weight decay (0.05) included.
    assert recorder.with_grad[0] == {"fc.weight", "fc.bias"}
    assert changed(start, after_frozen, BACKBONE) == set()
    assert changed(start, after_frozen, HEAD) == under(start, HEAD)
    assert recorder.training_norms[0] == set()
    # Epoch 1: everything trains, batch norms included.
    assert recorder.with_grad[1] == {n for n, _ in task.model.named_parameters()}
    assert changed(after_frozen, after_unfrozen, BACKBONE) == under(start, BACKBONE)
    assert "bn1" in recorder.training_norms[1] and "layer1.0.bn1" in recorder.training_norms[1]
    assert all(p.requires_grad for p in task.parameters())


def test_unfreeze_from_a_stage_keeps_the_earlier_stages_and_the_stem_frozen():
    task, recorder = make_task(backbone_lr_mult=0.1), Recorder()
    task.model.layer4[0].conv1.weight.requires_grad_(False)  # frozen before fitting: stays frozen
    trainer(3, BackboneFreeze(1, unfreeze_from=3), recorder).fit(task, loader())
    start, after_frozen, *after_unfrozen = recorder.states
    early, late = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3."), ("layer4.",)
    assert changed(start, after_frozen, BACKBONE) == set()
    for state in after_unfrozen:
        assert changed(start, state, early) == set()
        assert changed(start, state, late) == under(start, late) - {"layer4.0.conv1.weight"}
        assert changed(start, state, HEAD) == under(start, HEAD)
    late_parameters = {n for n, p in task.model.named_parameters() if n.startswith(late)}
    assert (
        recorder.with_grad[1]
        == recorder.with_grad[2]
        == {"fc.weight", "fc.bias"} | late_parameters - {"layer4.0.conv1.weight"}
    )
    assert recorder.training_norms[2] == {
        n for n, m in task.model.named_modules() if n.startswith("layer4.") and isinstance(m, torch.nn.BatchNorm2d)
    }
    assert not task.model.layer4[0].conv1.weight.requires_grad
    assert all(p.requires_grad for n, p in task.model.named_parameters() if n != "layer4.0.conv1.weight")


def test_each_named_group_has_the_configured_learning_rate(tmp_path):
    lr, mult, decay = 1e-2, 0.1, 0.5
    task = make_task(name="sgd", lr=lr, weight_decay=1e-4, backbone_lr_mult=mult, layer_decay=decay)
    fit = trainer(1, BackboneFreeze(1), LearningRateMonitor(), logger=CSVLogger(tmp_path, name="", version=""))
    fit.fit(task, loader())
    groups = fit.optimizers[0].param_groups
    expected = {"head": lr, **{f"backbone.stage{i}": lr * mult * decay ** (3 - i) for i in range(4)}}
    expected["backbone.stem"] = lr * mult * decay**4
    assert [g["name"] for g in groups] == [
        f"{name}{suffix}"
        for name in ["head", *(f"backbone.stage{i}" for i in (3, 2, 1, 0)), "backbone.stem"]
        for suffix in ("", "/no_decay")
    ]
    for group in groups:
        name = group["name"].removesuffix("/no_decay")
        assert group["lr"] == pytest.approx(expected[name])
        assert group["weight_decay"] == (0.0 if group["name"].endswith("/no_decay") else 1e-4)
    named = {id(p): n for n, p in task.named_parameters()}
    stage0 = next(g for g in groups if g["name"] == "backbone.stage0")
    assert {named[id(p)] for p in stage0["params"]} == {
        n for n, p in task.named_parameters() if n.startswith("model.layer1.") and p.ndim > 1
    }
    # LearningRateMonitor logs each group under its name.
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"lr-SGD/head", "lr-SGD/backbone.stem/no_decay", "lr-SGD/backbone.stage3"} <= set(header)


@pytest.mark.parametrize("weight_decay", [0.0, 1e-4])
def test_every_parameter_is_in_exactly_one_group_frozen_ones_included(weight_decay):
    task = make_task()
    task.model.fc.bias.requires_grad_(False)
    task.model.layer2[1].bn1.weight.requires_grad_(False)
    backbone = task.pretrained_module()
    for options in ({"backbone_lr_mult": 0.5}, {"layer_decay": 0.8}, {"backbone_lr_mult": 0.2, "layer_decay": 0.7}):
        optimizer = build_optimizer(
            task, "adamw", lr=1e-3, weight_decay=weight_decay, backbone=backbone, stages=STAGES, **options
        )
        ids = [id(p) for g in optimizer.param_groups for p in g["params"]]
        assert sorted(ids) == sorted(id(p) for p in task.parameters()) and len(set(ids)) == len(ids)
        names = [g["name"] for g in optimizer.param_groups]
        assert len(set(names)) == len(names)
        assert all("/no_decay" not in n for n in names) if not weight_decay else any("/no_decay" in n for n in names)
    # Without stages, the backbone is one group.
    optimizer = build_optimizer(task, "sgd", lr=1.0, backbone=backbone, backbone_lr_mult=0.1)
    assert [(g["name"], g["lr"]) for g in optimizer.param_groups] == [("head", 1.0), ("backbone", pytest.approx(0.1))]


def test_backbone_layers_follow_the_stage_modules():
    model = create_model("resnet18", num_classes=3, width_mult=0.25)
    stages = backbone_stages(model)
    assert stages == STAGES
    layers = {key: [n for n, _ in named] for key, named in backbone_layers(model, stages).items()}
    assert list(layers) == ["stem", "stage0", "stage1", "stage2", "stage3", "head"]
    assert layers["stem"] == ["conv1.weight", "bn1.weight", "bn1.bias"]
    assert layers["head"] == ["fc.weight", "fc.bias"]
    for i, name in enumerate(STAGES):
        assert layers[f"stage{i}"] == [n for n, _ in model.named_parameters() if n.startswith(f"{name}.")]
    # LeNet-5's first stages end at parameter-free pooling layers: the convolution before each is its stage (no
    # stem); what follows the last stage module (f6) belongs to the last stage.
    lenet = create_model("lenet5_modern")
    layers = {key: [n for n, _ in named] for key, named in backbone_layers(lenet, backbone_stages(lenet)).items()}
    assert layers == {
        "stage0": ["c1.0.weight", "c1.0.bias"],
        "stage1": ["c3.0.weight", "c3.0.bias"],
        "stage2": ["c5.0.weight", "c5.0.bias", "f6.1.weight", "f6.1.bias"],
        "head": ["output.weight", "output.bias"],
    }


@pytest.mark.parametrize("name", ["sgd", "adamw", "lamb"])
def test_optimizers_skip_frozen_parameters_in_their_groups(name):
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    frozen, start = model[0].weight, model[0].weight.detach().clone()
    frozen.requires_grad_(False)
    optimizer = build_optimizer(model, name, lr=0.1, weight_decay=0.5, backbone=model[0], backbone_lr_mult=0.5)
    assert any(p is frozen for g in optimizer.param_groups for p in g["params"])
    for _ in range(3):
        model(torch.randn(4, 3)).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    # No step, no weight decay (0.5 · lr would shrink it), no momentum or moment estimates.
    assert torch.equal(frozen, start) and not optimizer.state.get(frozen)
    # Unfrozen, it trains in the group it was in all along.
    frozen.requires_grad_(True)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    assert not torch.equal(frozen, start) and optimizer.state.get(frozen)


@pytest.mark.parametrize(
    ("name", "weight_decay", "extra"), [("adamw", 0.05, {}), ("sgd", 1e-4, {"nesterov": False}), ("adam", 0.0, {})]
)
def test_without_the_options_the_groups_are_timms(name, weight_decay, extra):
    from timm.optim import create_optimizer_v2

    task = make_task()
    task.model.fc.bias.requires_grad_(False)  # timm leaves frozen parameters out; so does the default
    backbone = task.pretrained_module()
    ours = build_optimizer(
        task, name, lr=1e-3, weight_decay=weight_decay, momentum=0.9, backbone=backbone, stages=STAGES
    ).param_groups
    timms = create_optimizer_v2(task, opt=name, lr=1e-3, weight_decay=weight_decay, momentum=0.9, **extra).param_groups
    assert len(ours) == len(timms)
    for mine, theirs in zip(ours, timms, strict=True):
        assert [id(p) for p in mine["params"]] == [id(p) for p in theirs["params"]]
        assert {k: v for k, v in mine.items() if k != "params"} == {k: v for k, v in theirs.items() if k != "params"}


def test_resume_after_the_frozen_epochs_freezes_nothing_and_before_them_goes_on_freezing(tmp_path):
    task = make_task(backbone_lr_mult=0.1)
    first = trainer(1, BackboneFreeze(2))
    first.fit(task, loader())
    first.save_checkpoint(tmp_path / "epoch1.ckpt")
    # Resumed in the frozen phase (epoch 1 < 2): the backbone stays where it was.
    recorder = Recorder()
    trainer(2, BackboneFreeze(2), recorder).fit(
        make_task(backbone_lr_mult=0.1), loader(), ckpt_path=tmp_path / "epoch1.ckpt"
    )
    assert recorder.with_grad[1] == {"fc.weight", "fc.bias"}
    assert changed(recorder.states[0], recorder.states[1], BACKBONE) == set()
    # Resumed after it (epoch 1 ≥ 1): all of the backbone trains from the first step.
    recorder = Recorder()
    trainer(2, BackboneFreeze(1), recorder).fit(
        make_task(backbone_lr_mult=0.1), loader(), ckpt_path=tmp_path / "epoch1.ckpt"
    )
    assert recorder.with_grad[1] == {n for n, _ in task.model.named_parameters()}
    assert changed(recorder.states[0], recorder.states[1], BACKBONE) == under(recorder.states[0], BACKBONE)


def test_cosine_anneals_each_group_to_its_own_floor():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    optimizer = torch.optim.SGD(
        [{"params": net[0].parameters(), "lr": 1.0}, {"params": net[1].parameters(), "lr": 0.1}]
    )
    scheduler = build_scheduler(optimizer, 100, 10, name="cosine", warmup_epochs=1, min_lr_ratio=0.1)
    seen = []
    for _ in range(100):
        seen.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    for step in range(10, 100):
        factor = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - 10) / 90))
        assert seen[step] == pytest.approx([factor, 0.1 * factor])
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.1, 0.01])


def test_options_are_checked():
    task = make_task()
    with pytest.raises(ConfigError, match="need the task's backbone"):
        build_optimizer(task, "sgd", lr=0.1, backbone_lr_mult=0.1)
    with pytest.raises(ConfigError, match="layer_decay needs the backbone's stages"):
        build_optimizer(task, "sgd", lr=0.1, layer_decay=0.5, backbone=task.model)
    with pytest.raises(ConfigError, match="layer_decay must be in"):
        build_optimizer(task, "sgd", lr=0.1, layer_decay=1.5, backbone=task.model, stages=STAGES)
    with pytest.raises(ConfigError, match="backbone_lr_mult must be > 0"):
        build_optimizer(task, "sgd", lr=0.1, backbone_lr_mult=0.0, backbone=task.model)
    with pytest.raises(ConfigError, match="has 4 stages"):
        trainer(1, BackboneFreeze(1, unfreeze_from=4)).fit(make_task(), loader())
    with pytest.raises(ConfigError, match="freeze_epochs must be"):
        BackboneFreeze(-1)


def test_a_backbone_frozen_for_the_whole_run_without_pretrained_weights_is_refused(tmp_path):
    from tests.core.test_training_faults import fast_config
    from vision_research.train import build_callbacks

    frozen = ["callbacks.finetune.freeze_epochs=5", "trainer.max_epochs=2"]
    with pytest.raises(
        ConfigError, match=r"freeze_epochs=5 ≥ trainer.max_epochs=2 keeps the backbone frozen .* no pre"
    ):
        build_callbacks(fast_config(*frozen), make_task(), tmp_path)
    weights = tmp_path / "weights.pt"
    pretrained = ImageClassifier("resnet18", num_classes=3, model_options={"width_mult": 0.25}, pretrained=str(weights))
    names = [type(c).__name__ for c in build_callbacks(fast_config(*frozen), pretrained, tmp_path)]
    assert "BackboneFreeze" in names  # a linear probe of pretrained features is legitimate
    unfrozen_later = [*frozen, "callbacks.finetune.unfreeze_from=2"]
    assert "BackboneFreeze" in [
        type(c).__name__ for c in build_callbacks(fast_config(*unfrozen_later), make_task(), tmp_path)
    ]
