"""Transfer learning end to end: a backbone trained on MNIST digits 0–4, saved, fine-tuned on digits 5–9 from 20
labelled images per class with the frozen-then-unfrozen schedule (Yosinski et al. 2014 split their classes in two)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from tests.trainers import cpu_trainer as trainer
from vision_research.callbacks import BackboneFreeze
from vision_research.data import create_datamodule
from vision_research.tasks import ImageClassifier

SIZE = 16
FROZEN, EPOCHS = 3, 6
LR, BACKBONE_LR_MULT = 3e-3, 0.1


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


def compose_train(overrides: list[str]) -> Any:
    from hydra import compose, initialize_config_dir

    from vision_research.config_tree import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("train", overrides=overrides)


@pytest.mark.parametrize(
    "schedule",
    [
        ["callbacks.finetune.freeze_epochs=1"],  # the classifier alone for an epoch, then everything
        ["callbacks.finetune.freeze_epochs=0", "callbacks.finetune.cache_features=true", "data.augment=none"],
    ],
    ids=["freeze_then_fine_tune", "cached_features"],
)
def test_finetune_folder_fine_tunes_a_pretrained_file_on_a_folder_per_class(schedule, tmp_path):
    import numpy as np
    from PIL import Image

    from vision_research.models import create_model
    from vision_research.train import train

    rng = np.random.default_rng(0)
    for index, colour in enumerate(("red", "green", "blue")):
        (tmp_path / "images" / colour).mkdir(parents=True)
        for number in range(10):
            pixels = rng.integers(0, 60, (40, 48, 3), dtype=np.uint8)
            pixels[..., index] += 150
            Image.fromarray(pixels).save(tmp_path / "images" / colour / f"{number}.png")
    weights = tmp_path / "resnet18.pt"
    torch.save(create_model("resnet18", num_classes=1000).state_dict(), weights)
    cfg = compose_train(
        [
            "experiment=finetune_folder",
            f"data.root={tmp_path / 'images'}",
            f"model.pretrained={weights}",
            "data.image_size=32",
            "data.batch_size=8",
            "data.val_fraction=0.2",
            "data.test_fraction=0.2",
            "trainer.max_epochs=2",
            *schedule,
            "callbacks.progress_bar=none",
            "logger.tensorboard=false",
        ]
    )
    summary = train(cfg, tmp_path / "run")
    assert summary["epochs"] == 2 and summary["global_step"] == 2 * 2  # 18 training images, batches of 8
    assert {"test/acc1", "best/val/acc1"} <= set(summary["metrics"])
    assert summary["gflops"] > 0.01  # the whole network's cost on an image, also when it trained on features
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert state["model.fc.weight"].shape == (3, 512)


@pytest.mark.parametrize("name", ["v1", "v2", "v3", "vgg16"])
def test_the_histology_recipe_models_compose_at_the_books_150_pixels(name, tmp_path):
    from vision_research.build import build_task

    (tmp_path / "01_TUMOR").mkdir()
    (tmp_path / "02_STROMA").mkdir()
    cfg = compose_train(
        ["data=image_folder", f"data.root={tmp_path}", "data.image_size=150", "model=michelucci_histology"]
        + [f"model.name=michelucci_histology_{name}", "data.scan_images=false"]
    )

    class Data:  # what the task learns from the data (tasks.contract.TaskData), without images to read
        num_classes, in_chans, class_names = 8, 3, [f"class{i}" for i in range(8)]
        mean, std, image_size = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), (150, 150)

    task = build_task(cfg, Data())
    assert task.model(torch.zeros(1, 3, 150, 150)).shape == (1, 8)
