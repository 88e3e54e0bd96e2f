"""FeatureCache: the head trained on features computed once equals the head trained on the images, backbone frozen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from tests.trainers import cpu_trainer
from vision_research.callbacks import BackboneFreeze, FeatureCache, TrainingThroughput
from vision_research.data import create_datamodule
from vision_research.errors import ConfigError
from vision_research.tasks import ImageClassifier

EPOCHS = 2


class GradientNames(Callback):
    """The model's parameters that had a gradient at some optimizer step, and the val accuracy of each epoch."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.val_acc: list[float] = []

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        self.names |= {n for n, p in pl_module.model.named_parameters() if p.grad is not None}

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.val_acc.append(float(trainer.callback_metrics["val/acc1"]))


def fit(*callbacks: Callback, augment: dict | None = None) -> tuple[ImageClassifier, GradientNames, L.Trainer]:
    """Two epochs of a ResNet-20 classifier on the 8×8 digits; the trainer's last callbacks measure and record."""
    L.seed_everything(7, verbose=False)
    datamodule = create_datamodule("digits", image_size=8, batch_size=64, augment=augment)
    task = ImageClassifier(
        "resnet20",
        num_classes=10,
        in_chans=1,
        optimizer={"name": "adamw", "lr": 1e-2, "weight_decay": 0.05},
        scheduler={"name": "cosine"},
    )
    recorder = GradientNames()
    # TrainingThroughput's FLOP count must not wake the frozen batch norms.
    trainer = cpu_trainer(EPOCHS, *callbacks, TrainingThroughput(), recorder)
    trainer.fit(task, datamodule=datamodule)
    return task, recorder, trainer


def test_cached_features_give_the_heads_weights_of_training_on_the_images_with_the_backbone_frozen():
    uncached, uncached_record, uncached_trainer = fit(BackboneFreeze(freeze_epochs=EPOCHS))
    cached, cached_record, trainer = fit(FeatureCache())

    assert cached_record.names == uncached_record.names == {"fc.weight", "fc.bias"}
    # The run's cost is the whole network's on an image, also when it trained on features.
    uncached_gflops, cached_gflops = (
        next(c for c in t.callbacks if isinstance(c, TrainingThroughput)).gflops for t in (uncached_trainer, trainer)
    )
    assert cached_gflops == pytest.approx(uncached_gflops) and cached_gflops > 1e-3
    for name, weight in uncached.model.fc.state_dict().items():
        before = ImageClassifier("resnet20", num_classes=10, in_chans=1).model.fc.state_dict()[name]
        assert not torch.allclose(weight, before)  # the head did train
        torch.testing.assert_close(cached.model.fc.state_dict()[name], weight, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cached_record.val_acc, uncached_record.val_acc)
    # After fitting the model reads images again: its val accuracy on them is the one measured on the features.
    assert not cached.inputs_are_features and all(p.requires_grad for p in cached.parameters())  # released
    measured = trainer.validate(cached, datamodule=trainer.datamodule, verbose=False)[0]["val/acc1"]
    assert measured == pytest.approx(cached_record.val_acc[-1])


def test_augmented_training_images_cannot_be_cached():
    with pytest.raises(ConfigError, match="data.augment"):
        fit(FeatureCache(), augment={"degrees": 10})


def test_only_a_classifier_can_train_on_cached_features():
    from vision_research.tasks import SemanticSegmenter

    segmenter = SemanticSegmenter("resnet18", num_classes=2, in_chans=1, model_options={"width_mult": 0.25})
    trainer = cpu_trainer(1, FeatureCache())
    with pytest.raises(ConfigError, match="not one"):
        trainer.fit(segmenter, datamodule=create_datamodule("digits", image_size=16))


def test_a_config_that_unfreezes_the_backbone_cannot_cache_its_features():
    from hydra import compose, initialize_config_dir

    from vision_research.config_tree import config_dir
    from vision_research.train import build_callbacks

    cache = "callbacks.finetune.cache_features=true"
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        good = compose("train", overrides=[cache, "data=digits", "data.augment=null"])
        bad = compose("train", overrides=[cache, "callbacks.finetune.freeze_epochs=1", "trainer.max_epochs=3"])
    names = [type(c).__name__ for c in build_callbacks(good, ImageClassifier("lenet5_modern"), Path("unused"))]
    assert "FeatureCache" in names and "BackboneFreeze" not in names
    with pytest.raises(ConfigError, match="freeze_epochs=1"):
        build_callbacks(bad, ImageClassifier("lenet5_modern"), Path("unused"))


def test_a_cache_refused_at_set_up_leaves_the_run_folder_free_for_the_corrected_command(tmp_path):
    from tests.core.test_training_faults import fast_config
    from vision_research.train import train

    cache = ["data=digits", "callbacks.finetune.cache_features=true", "logger.tensorboard=true"]
    with pytest.raises(ConfigError, match="cannot augment them"):
        train(fast_config(*cache, "+data.augment={degrees: 10}"), tmp_path / "run")
    assert not list((tmp_path / "run").glob("events.out.tfevents.*"))
    summary = train(fast_config(*cache, "data.augment=null"), tmp_path / "run")  # not refused as a previous run
    assert summary["epochs"] == 1
