"""Transfer learning end to end: a backbone trained on MNIST digits 0–4, saved, fine-tuned on digits 5–9 from 20
labelled images per class with the frozen-then-unfrozen schedule (Yosinski et al. 2014 split their classes in two)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from vision_research.callbacks import BackboneFreeze
from vision_research.data import create_datamodule
from vision_research.tasks import ImageClassifier

SIZE = 16
FROZEN, EPOCHS = 3, 6
LR, BACKBONE_LR_MULT = 3e-3, 0.1


def trainer(max_epochs: int, *callbacks: Callback) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        precision="32-true",
        max_epochs=max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
    )


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet-20 trained one epoch on the embedded MNIST digits 0–4, saved as a Lightning checkpoint."""
    L.seed_everything(0, verbose=False)
    datamodule = create_datamodule("mnist", classes=[0, 1, 2, 3, 4], image_size=SIZE, batch_size=64)
    task = ImageClassifier("resnet20", num_classes=5, in_chans=1, optimizer={"name": "adamw", "lr": LR})
    fit = trainer(1)
    fit.fit(task, datamodule=datamodule)
    path = tmp_path_factory.mktemp("pretrained") / "digits_0-4.ckpt"
    fit.save_checkpoint(path)
    return path


class PhaseRecorder(Callback):
    """The weights training starts from; the optimizer's groups and rates; per epoch, the parameters that had a
    gradient at an optimizer step."""

    def __init__(self) -> None:
        self.start: dict[str, torch.Tensor] = {}
        self.group_lrs: dict[str, float] = {}
        self.with_grad: dict[int, set[str]] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = {name: tensor.clone() for name, tensor in pl_module.model.state_dict().items()}
        self.group_lrs = {group["name"]: group["lr"] for group in trainer.optimizers[0].param_groups}

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        names = {n for n, p in pl_module.model.named_parameters() if p.grad is not None}
        self.with_grad.setdefault(trainer.current_epoch, set()).update(names)


def fine_tune(pretrained: Path | None) -> tuple[float, PhaseRecorder, ImageClassifier]:
    """Digits 5–9, 20 training images per class: test accuracy after the schedule, what it recorded, the task."""
    L.seed_everything(1, verbose=False)
    datamodule = create_datamodule(
        "mnist", classes=[5, 6, 7, 8, 9], train_per_class=20, image_size=SIZE, batch_size=20, augment=None
    )
    task = ImageClassifier(
        "resnet20",
        num_classes=5,
        in_chans=1,
        pretrained=str(pretrained) if pretrained else None,
        new_classifier=True,  # as many classes as the pretraining, but other ones
        optimizer={"name": "adamw", "lr": LR, "weight_decay": 0.0, "backbone_lr_mult": BACKBONE_LR_MULT},
        scheduler={"name": "none"},
    )
    recorder = PhaseRecorder()
    run = trainer(EPOCHS, BackboneFreeze(freeze_epochs=FROZEN), recorder)
    run.fit(task, datamodule=datamodule)
    accuracy = run.test(task, datamodule=datamodule, verbose=False)[0]["test/acc1"]
    return accuracy, recorder, task


def test_fine_tuning_a_pretrained_backbone_on_other_classes_beats_a_random_one(pretrained):
    accuracy, recorder, task = fine_tune(pretrained)
    random_accuracy, _, _ = fine_tune(None)

    head = {"fc.weight", "fc.bias"}
    everything = {name for name, _ in task.model.named_parameters()}
    assert all(recorder.with_grad[epoch] == head for epoch in range(FROZEN))
    assert all(recorder.with_grad[epoch] == everything for epoch in range(FROZEN, EPOCHS))
    # The head at lr, every backbone layer at lr · backbone_lr_mult (weight decay 0: one group per layer).
    assert recorder.group_lrs == {
        "head": LR,
        "backbone.stem": LR * BACKBONE_LR_MULT,
        **{f"backbone.stage{i}": LR * BACKBONE_LR_MULT for i in range(3)},
    }
    # Training started from the pretrained backbone and a new classifier.
    source = torch.load(pretrained, map_location="cpu", weights_only=True)["state_dict"]
    assert torch.equal(recorder.start["layer3.2.conv2.weight"], source["model.layer3.2.conv2.weight"])
    assert not torch.equal(recorder.start["fc.weight"], source["model.fc.weight"])
    assert accuracy > random_accuracy + 0.1, (accuracy, random_accuracy)
