"""SemanticSegmenter: a short run learns, whole-set metrics, checkpoints rebuild, vr predict writes PNGs."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, default_collate

from vision_research.data.base import normalise
from vision_research.data.shapes import ShapesDataModule, generate_shapes
from vision_research.errors import ConfigError
from vision_research.tasks import SemanticSegmenter

SHAPES = {"num_train": 16, "num_val": 8, "num_test": 8, "seed": 5}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = generate_shapes(tmp_path_factory.mktemp("seg") / "shapes", image_size=64, **SHAPES)
    data = ShapesDataModule(
        str(root), task="segmentation", scene_size=64, batch_size=8, num_workers=0, augment="none", **SHAPES
    )
    L.seed_everything(0, verbose=False)
    task = SemanticSegmenter(
        "resnet18",
        num_classes=data.num_classes,
        model_options={"width_mult": 0.25},
        head={"variant": "8s", "hidden_channels": 32, "dropout": 0.0},
        aux_loss_weight=0.4,
        optimizer={"name": "adamw", "lr": 3e-3},
        class_names=data.class_names,
    )
    trainer = L.Trainer(
        max_epochs=16,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path_factory.mktemp("fit"),
        accelerator="cpu",
        num_sanity_val_steps=0,
    )
    trainer.fit(task, datamodule=data)
    return trainer, task, data


def test_short_run_learns_more_than_the_background(fitted):
    trainer, task, data = fitted
    metrics = trainer.callback_metrics
    assert {"val/miou", "val/pixel_acc", "val/mean_acc", "val/iou_background", "train/loss_aux"} <= set(metrics)
    assert 0 <= float(metrics["val/miou"]) <= 1
    # On the (few) training scenes the net must find the shapes: better than calling every pixel background.
    task.eval()
    loader = data.train_dataloader()
    correct = total = background = 0
    with torch.no_grad():
        for images, masks in loader:
            images, masks = data.on_after_batch_transfer((images, masks), 0)
            predictions = task(images).argmax(dim=1)
            correct += int((predictions == masks).sum())
            background += int((masks == 0).sum())
            total += masks.numel()
    assert correct / total > background / total + 0.04


def test_test_metrics_equal_a_confusion_matrix_counted_by_hand(fitted):
    trainer, task, data = fitted
    (result,) = trainer.test(task, datamodule=data, verbose=False)
    counts = torch.zeros(4, 4, dtype=torch.int64)
    task.eval()
    with torch.no_grad():
        for images, masks in data.test_dataloader():
            images, masks = data.on_after_batch_transfer((images, masks), 0)
            predictions = task(images).argmax(dim=1)
            keep = masks != 255
            counts += torch.bincount(masks[keep] * 4 + predictions[keep], minlength=16).view(4, 4)
    diagonal = counts.diagonal().double()
    iou = diagonal / (counts.sum(0) + counts.sum(1) - counts.diagonal()).double()
    assert result["test/miou"] == pytest.approx(float(iou[~iou.isnan()].mean()), abs=1e-6)
    assert result["test/pixel_acc"] == pytest.approx(float(diagonal.sum() / counts.sum()), abs=1e-6)


def test_a_bare_dataloader_evaluates_the_segmenter_as_its_datamodule(fitted, tmp_path):
    """A plain DataLoader over the test dataset (no datamodule) gives the datamodule's test figures."""
    trainer, task, data = fitted
    (with_datamodule,) = trainer.test(task, datamodule=data, verbose=False)

    def collate(batch: list) -> tuple:
        images, masks = default_collate(batch)
        return normalise(images, data.mean, data.std), masks.long()

    loader = DataLoader(data.dataset("test"), batch_size=5, collate_fn=collate)
    bare_trainer = L.Trainer(logger=False, enable_progress_bar=False, default_root_dir=tmp_path, accelerator="cpu")
    (bare,) = bare_trainer.test(task, dataloaders=loader, verbose=False)
    # Batches of 5 against the datamodule's eval batches: the loss is summed in another order (float rounding).
    assert bare == pytest.approx(with_datamodule, rel=1e-6, abs=1e-7) and bare["test/miou"] > 0


def test_checkpoint_rebuilds_and_predict_writes_palette_pngs(fitted, tmp_path):
    from vision_research.cli import main

    trainer, task, data = fitted
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    trainer.save_checkpoint(run / "checkpoints" / "last.ckpt")
    config = {"task": {"name": "segmentation"}, "data": {"name": "shapes", "image_size": None, "scene_size": 64}}
    (run / "config.yaml").write_text(__import__("omegaconf").OmegaConf.to_yaml(config))
    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(3):
        image, _ = data.dataset("test")[index]
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(photos / f"p{index}.png")
    Image.fromarray(np.full((50, 90, 3), 128, np.uint8)).save(photos / "wide.jpg")  # not square: letterboxed
    assert main(["predict", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", f"input={photos}"]) == 0
    written = sorted(p.name for p in (run / "predictions").iterdir())
    assert written == ["p0.png.png", "p1.png.png", "p2.png.png", "wide.jpg.png"]
    wide = Image.open(run / "predictions" / "wide.jpg.png")
    assert wide.mode == "P" and wide.size == (90, 50)
    # The same image through the task directly gives the same class map.
    images, _ = data.on_after_batch_transfer(next(iter(data.test_dataloader())), 0)
    task.eval()
    with torch.no_grad():
        expected = task(images[:1]).argmax(dim=1)[0].numpy()
    assert np.array_equal(np.asarray(Image.open(run / "predictions" / "p0.png.png")), expected)
    rebuilt = SemanticSegmenter.load_from_checkpoint(run / "checkpoints" / "last.ckpt")
    assert rebuilt.hparams.head == {"variant": "8s", "hidden_channels": 32, "dropout": 0.0}


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="2 class names for 4 classes"):
        SemanticSegmenter("resnet18", num_classes=4, class_names=["a", "b"])
    with pytest.raises(ConfigError, match="class_weights has 3 values for 4 classes"):
        SemanticSegmenter("resnet18", num_classes=4, class_weights=[1, 1, 1])
    with pytest.raises(ConfigError, match="variant must be one of"):
        SemanticSegmenter("resnet18", num_classes=4, head={"variant": "2s"})


def test_loss_is_finite_under_bf16_autocast():
    task = SemanticSegmenter(
        "resnet18", num_classes=3, model_options={"width_mult": 0.25}, head={"hidden_channels": 16}
    )
    images, masks = torch.randn(2, 3, 48, 48), torch.randint(0, 3, (2, 48, 48))
    masks[0, :5] = 255
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = task.criterion(task(images), masks)
    assert torch.isfinite(loss)
    loss.backward()


@pytest.mark.parametrize("aux_loss_weight", [0.0, 0.4])
def test_every_backbone_stage_the_fcn_reads_trains_and_only_the_classifier_is_frozen(aux_loss_weight):
    task = SemanticSegmenter(
        "resnet18", num_classes=3, model_options={"width_mult": 0.25}, aux_loss_weight=aux_loss_weight
    )
    frozen = {name for name, p in task.backbone.named_parameters() if not p.requires_grad}
    assert frozen == {"fc.weight", "fc.bias"}
