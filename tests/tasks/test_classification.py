"""ImageClassifier: a short run that really learns, metrics equal to a hand count, checkpoints that rebuild."""

import lightning as L
import pytest
import torch

from vision_research.data import DigitsDataModule
from vision_research.errors import ConfigError
from vision_research.tasks import ImageClassifier


def quiet_trainer(tmp_path, **kwargs) -> L.Trainer:
    options = dict(
        max_epochs=4,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        accelerator="cpu",
        num_sanity_val_steps=0,
    )
    return L.Trainer(**{**options, **kwargs})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    L.seed_everything(0, verbose=False)
    dm = DigitsDataModule(image_size=32, batch_size=32)
    task = ImageClassifier(
        "lenet5_modern",
        num_classes=10,
        in_chans=1,
        optimizer={"name": "adamw", "lr": 3e-3},
        scheduler={"name": "cosine"},
    )
    trainer = quiet_trainer(tmp_path_factory.mktemp("fit"))
    trainer.fit(task, datamodule=dm)
    assert float(trainer.callback_metrics["train/loss"]) < 1.0  # ln(10) = 2.3 at chance
    return trainer, task, dm


def test_short_run_learns_far_above_chance(trained):
    trainer, task, dm = trained
    results = trainer.test(task, datamodule=dm, verbose=False)[0]
    assert results["test/acc1"] > 0.8  # chance is 0.1


def test_reported_top1_top5_equal_a_hand_count(trained):
    trainer, task, dm = trained
    results = trainer.test(task, datamodule=dm, verbose=False)[0]
    split = dm.splits["test"]
    task.eval()
    with torch.no_grad():
        logits = task(dm.normalise(split.images))
    top5 = logits.topk(5, dim=1).indices
    acc1 = (top5[:, 0] == split.labels).float().mean().item()
    acc5 = (top5 == split.labels[:, None]).any(1).float().mean().item()
    assert results["test/acc1"] == pytest.approx(acc1, abs=1e-6)
    assert results["test/acc5"] == pytest.approx(acc5, abs=1e-6)


def test_checkpoint_rebuilds_the_task_by_name(trained, tmp_path):
    trainer, task, dm = trained
    path = tmp_path / "task.ckpt"
    trainer.save_checkpoint(path)
    restored = ImageClassifier.load_from_checkpoint(path).eval()
    x = dm.normalise(dm.splits["val"].images[:8])
    task.eval()
    torch.testing.assert_close(restored(x), task(x))
    assert restored.hparams.model == "lenet5_modern"


def test_pretrained_weights_are_loaded_when_fitting_starts(trained, tmp_path):
    _, task, dm = trained
    weights = tmp_path / "backbone.pt"
    torch.save(task.model.state_dict(), weights)
    fresh = ImageClassifier("lenet5_modern", num_classes=10, pretrained=str(weights))
    quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=0, limit_val_batches=0).fit(fresh, datamodule=dm)
    torch.testing.assert_close(fresh.model.c5[0].weight, task.model.c5[0].weight)


def test_timm_backbone_trains_one_step(tmp_path):
    dm = DigitsDataModule(image_size=32, batch_size=16)
    task = ImageClassifier("timm:resnet18", num_classes=10, in_chans=1, optimizer={"name": "sgd", "lr": 0.01})
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    trainer.fit(task, datamodule=dm)
    assert trainer.global_step == 2 and torch.isfinite(trainer.callback_metrics["train/loss"])


def test_bad_hyperparameters_are_config_errors():
    with pytest.raises(ConfigError, match="label_smoothing"):
        ImageClassifier("lenet5", label_smoothing=1.5)
    with pytest.raises(ConfigError, match="unknown model 'lenet'"):
        ImageClassifier("lenet")


class AuxNet(torch.nn.Module):
    """Two heads: the main one and an auxiliary one, returned as (logits, aux) in training mode only."""

    def __init__(self) -> None:
        super().__init__()
        self.main, self.aux = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)

    def forward(self, x):
        return (self.main(x), self.aux(x)) if self.training else self.main(x)


def test_auxiliary_losses_are_added_with_their_weight_in_training_only():
    task = ImageClassifier("lenet5_modern", num_classes=3, aux_loss_weight=0.3)
    task.model = AuxNet()
    logged = {}
    task.log_dict = lambda values, **kw: logged.update(values)
    task.log = lambda name, value, **kw: logged.update({name: value})
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    loss = task.training_step((x, y), 0)
    ce = torch.nn.functional.cross_entropy
    expected = ce(task.model.main(x), y) + 0.3 * ce(task.model.aux(x), y)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(logged["train/loss_aux"], ce(task.model.aux(x), y))
    task.eval()
    assert isinstance(task(x), torch.Tensor)


def test_vr_predict_writes_the_top_five_classes_with_the_task_normalisation(tmp_path):
    """An RGB classifier's checkpoint: predictions.csv holds, per image, the softmax top 5 of the centre crop
    normalised with the task's own mean / std (here not ImageNet's)."""
    import csv

    import numpy as np
    from omegaconf import OmegaConf
    from PIL import Image

    from vision_research.data.base import normalise
    from vision_research.data.transforms import build_classification_transforms
    from vision_research.predict import predict

    L.seed_everything(0, verbose=False)
    names = [f"class{i}" for i in range(6)]
    task = ImageClassifier(
        "resnet18", num_classes=6, in_chans=3, class_names=names, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3)
    ).eval()
    trainer = quiet_trainer(tmp_path)
    trainer.strategy.connect(task)
    run = tmp_path / "run"
    trainer.save_checkpoint(run / "checkpoints" / "last.ckpt")
    (run / "config.yaml").write_text(
        OmegaConf.to_yaml({"task": {"name": "classification"}, "data": {"image_size": 48}})
    )
    photos = tmp_path / "photos"
    photos.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(photos / "a.png")
    output = predict(run / "checkpoints" / "last.ckpt", photos)
    with open(output / "predictions.csv") as f:
        header, row = list(csv.reader(f))
    crop = build_classification_transforms(48, train=False)(image=pixels)["image"]
    image = normalise(torch.from_numpy(crop).permute(2, 0, 1)[None], (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    with torch.no_grad():
        top = task(image).softmax(dim=1).topk(5, dim=1)
    assert header == ["file", "top-5 class:probability"]
    assert row == ["a.png", *(f"{names[i]}:{p:.4f}" for p, i in zip(top.values[0], top.indices[0], strict=True))]


def test_input_statistics_are_the_datas_else_imagenets_for_the_channel_count():
    from vision_research.constants import dataset_stats

    grey = ImageClassifier("lenet5", num_classes=10, in_chans=1)
    assert grey.input_stats == dataset_stats("imagenet", 1) and len(grey.input_stats[0]) == 1
    mnist = ImageClassifier("lenet5", num_classes=10, in_chans=1, mean=[0.1307], std=[0.3081])
    assert mnist.input_stats == ((0.1307,), (0.3081,))


def test_a_task_without_predict_images_is_a_one_line_config_error():
    from vision_research.tasks.base import VisionTask

    class Bare(VisionTask):
        monitor = "val/score"

    with pytest.raises(ConfigError, match="Bare does not predict image files: give it a predict_images method"):
        Bare().predict_images(torch.zeros(1, 3, 8, 8), [], [])
