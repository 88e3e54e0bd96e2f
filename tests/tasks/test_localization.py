"""ObjectLocalizer: the loss by hand, a short fit lowers the box loss, IoU / loc_acc by hand, configs compose."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir

from vision_research.build import build_task
from vision_research.config_tree import config_dir
from vision_research.data.shapes import ShapesDataModule, generate_shapes
from vision_research.errors import ConfigError
from vision_research.tasks.localization import ObjectLocalizer, decode_boxes, encode_boxes, largest_objects
from vision_research.tasks.registry import TASKS

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models (conftest.py)

SHAPES = {"num_train": 48, "num_val": 16, "num_test": 8, "max_objects": 1, "seed": 3}


def _trainer(root, epochs: int) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=root,
        accelerator="cpu",
        num_sanity_val_steps=0,
    )


def test_loss_equals_the_formula_by_hand():
    task = ObjectLocalizer("lenet5_modern", num_classes=3, box_loss_weight=5.0)
    size = (32, 64)  # H, W: not square, so that swapped axes would show
    targets = [
        {"boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0], [8.0, 16.0, 40.0, 32.0]]), "labels": torch.tensor([0, 2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # no object: left out
        {"boxes": torch.tensor([[0.0, 0.0, 16.0, 8.0]]), "labels": torch.tensor([1])},
    ]
    logits = torch.tensor([[1.0, 0.0, 2.0], [5.0, 5.0, 5.0], [0.0, 3.0, 1.0]])
    boxes = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.1, 0.1, 0.1, 0.1], [0.2, 0.1, 0.4, 0.6]])
    objects = largest_objects(targets, torch.device("cpu"))
    assert objects.index.tolist() == [0, 2] and objects.labels.tolist() == [2, 1]  # the larger box of image 0

    total, loss_cls, loss_box = task.loss(logits, boxes, objects, size)

    cross_entropy = (
        -math.log(math.exp(2) / (math.exp(1) + 1 + math.exp(2)))
        - math.log(math.exp(3) / (1 + math.exp(3) + math.exp(1)))
    ) / 2
    # Targets (cx / W, cy / H, √(w / W), √(h / H)): (24/64, 24/32, √(32/64), √(16/32)), (8/64, 4/32, √(16/64), √(8/32))
    half = math.sqrt(0.5)
    squared = [(0.5 - 0.375) ** 2, (0.5 - 0.75) ** 2, (0.5 - half) ** 2, (0.5 - half) ** 2]
    squared += [(0.2 - 0.125) ** 2, (0.1 - 0.125) ** 2, (0.4 - 0.5) ** 2, (0.6 - 0.5) ** 2]
    mse = sum(squared) / 8
    assert loss_cls.item() == pytest.approx(cross_entropy, rel=1e-6)
    assert loss_box.item() == pytest.approx(mse, rel=1e-6)
    assert total.item() == pytest.approx(cross_entropy + 5.0 * mse, rel=1e-6)


def test_box_encoding_round_trips():
    boxes = torch.tensor([[8.0, 16.0, 40.0, 32.0], [0.0, 0.0, 64.0, 32.0]])
    encoded = encode_boxes(boxes, (32, 64))
    torch.testing.assert_close(encoded[1], torch.ones(4) * torch.tensor([0.5, 0.5, 1.0, 1.0]))
    torch.testing.assert_close(decode_boxes(encoded, (32, 64)), boxes)


def test_a_batch_without_objects_gives_a_zero_loss_tied_to_the_graph():
    task = ObjectLocalizer("lenet5_modern", num_classes=3)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    loss = task.training_step((torch.randn(2, 3, 32, 32), [empty, empty]), 0)
    assert loss.item() == 0.0 and loss.requires_grad


@pytest.mark.parametrize(
    "options, message",
    [
        ({"box_loss_weight": -1.0}, "box_loss_weight"),
        ({"iou_threshold": 0.0}, "iou_threshold"),
        ({"iou_threshold": 1.5}, "iou_threshold"),
        ({"class_names": ["circle", "square"]}, "2 class names for 3 classes"),
    ],
)
def test_bad_options_raise_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        ObjectLocalizer("lenet5_modern", num_classes=3, **options)


def _box_loss(task: ObjectLocalizer, data: ShapesDataModule, split: str) -> float:
    """The mean box loss of ``task`` (eval mode) over every image of ``split``."""
    loader = data.train_dataloader() if split == "train" else data.val_dataloader()
    total, count, was_training = 0.0, 0, task.training
    task.eval()
    with torch.no_grad():
        for batch in loader:
            images, targets = data.on_after_batch_transfer(batch, 0)
            logits, boxes = task(images)
            objects = largest_objects(targets, images.device)
            total += task.loss(logits, boxes, objects, tuple(images.shape[-2:]))[2].item() * len(objects.index)
            count += len(objects.index)
    task.train(was_training)
    return total / count


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = generate_shapes(tmp_path_factory.mktemp("loc") / "shapes", image_size=64, **SHAPES)
    data = ShapesDataModule(str(root), scene_size=64, batch_size=16, num_workers=0, augment="none", **SHAPES)
    L.seed_everything(0, verbose=False)
    task = ObjectLocalizer(
        "resnet18",
        num_classes=data.num_classes,
        model_options={"width_mult": 0.25},
        optimizer={"name": "adamw", "lr": 3e-3},
        scheduler={"name": "none"},
        class_names=list(data.class_names),
    )
    data.setup("fit")
    before = {split: _box_loss(task, data, split) for split in ("train", "val")}
    trainer = _trainer(tmp_path_factory.mktemp("fit"), epochs=6)
    trainer.fit(task, datamodule=data)
    return trainer, task, data, before


def test_a_short_fit_lowers_the_box_loss(fitted):
    trainer, task, data, before = fitted
    metrics = trainer.callback_metrics
    assert {"train/loss", "train/loss_cls", "train/loss_box", "val/acc1", "val/iou", "val/loc_acc"} <= set(metrics)
    assert task.monitor == "val/loc_acc"
    after = {split: _box_loss(task, data, split) for split in ("train", "val")}
    # Measured (eval mode): train 0.049 → 0.022, val 0.074 → 0.038.
    assert after["train"] < 0.75 * before["train"] and after["val"] < 0.75 * before["val"]
    assert float(metrics["val/loss_box"]) == pytest.approx(after["val"], rel=1e-4)


def test_iou_and_localisation_accuracy_equal_a_hand_count(fitted):
    trainer, task, data, _ = fitted
    (result,) = trainer.test(task, datamodule=data, verbose=False)
    ious, hits, right = [], 0, 0
    task.eval()
    with torch.no_grad():
        for images, targets in data.test_dataloader():
            images, targets = data.on_after_batch_transfer((images, targets), 0)
            predicted = task.predict_step(images, 0)
            for box, label, target in zip(predicted["boxes"].tolist(), predicted["labels"], targets, strict=True):
                (truth,) = target["boxes"].tolist()  # max_objects=1, no augmentation: exactly one object
                width = min(box[2], truth[2]) - max(box[0], truth[0])
                height = min(box[3], truth[3]) - max(box[1], truth[1])
                overlap = max(width, 0) * max(height, 0)
                union = (box[2] - box[0]) * (box[3] - box[1]) + (truth[2] - truth[0]) * (truth[3] - truth[1])
                ious.append(overlap / (union - overlap))
                right += int(label == target["labels"][0])
                hits += int(label == target["labels"][0] and ious[-1] >= 0.5)
    count = len(ious)
    assert count == SHAPES["num_test"]
    assert result["test/iou"] == pytest.approx(sum(ious) / count, abs=1e-5)
    assert result["test/loc_acc"] == pytest.approx(hits / count, abs=1e-6)
    assert result["test/acc1"] == pytest.approx(right / count, abs=1e-6)


def test_predictions_are_boxes_in_input_pixels_and_the_checkpoint_rebuilds(fitted, tmp_path):
    trainer, task, data, _ = fitted
    images, _ = data.on_after_batch_transfer(next(iter(data.test_dataloader())), 0)
    task.eval()
    with torch.no_grad():
        predicted = task.predict_step((images,), 0)
    assert predicted["boxes"].shape == (len(images), 4) and predicted["labels"].shape == (len(images),)
    assert bool(((predicted["boxes"] >= 0) & (predicted["boxes"] <= 64)).all())
    assert bool(((predicted["scores"] > 0) & (predicted["scores"] <= 1)).all())
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    rebuilt = ObjectLocalizer.load_from_checkpoint(tmp_path / "last.ckpt").eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.predict_step(images, 0)["boxes"], predicted["boxes"])


def test_vr_predict_writes_each_images_class_and_box_in_its_own_pixels(fitted, tmp_path):
    """predictions.csv: class, probability and box per image, the box mapped back from the letterbox (a 64×64 scene
    is its own input; a 32×64 crop of it is padded, so its box moves up by the padding); a drawing per image."""
    import csv

    from omegaconf import OmegaConf
    from PIL import Image

    from vision_research.predict import predict

    trainer, task, data, _ = fitted
    run = tmp_path / "run"
    trainer.save_checkpoint(run / "checkpoints" / "last.ckpt")
    config = {"task": {"name": "localization"}, "data": {"name": "shapes", "image_size": 64}}
    (run / "config.yaml").write_text(OmegaConf.to_yaml(config))
    image, _ = data.dataset("test")[0]
    scene = image.permute(1, 2, 0).numpy()
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(scene).save(photos / "scene.png")
    Image.fromarray(scene[16:48]).save(photos / "strip.png")  # 32 rows: letterboxed with 16 rows above and below
    output = predict(run / "checkpoints" / "last.ckpt", photos)
    with open(output / "predictions.csv") as f:
        header, *rows = list(csv.reader(f))
    assert header == ["file", "class", "probability", "x1", "y1", "x2", "y2"]
    found = {row[0]: row[1:] for row in rows}
    assert set(found) == {"scene.png", "strip.png"}
    images, _ = data.on_after_batch_transfer(next(iter(data.test_dataloader())), 0)
    task.eval()
    with torch.no_grad():
        expected = task.predict_step(images[:1], 0)
    name, probability, *box = found["scene.png"]
    assert name == data.class_names[int(expected["labels"][0])]
    assert float(probability) == pytest.approx(float(expected["scores"][0]), abs=1e-4)
    assert [float(v) for v in box] == pytest.approx(expected["boxes"][0].tolist(), abs=0.06)
    _, _, *strip_box = found["strip.png"]
    assert 0 <= float(strip_box[1]) <= float(strip_box[3]) <= 32  # inside the 32-row original
    assert Image.open(output / "strip.png.jpg").size == (64, 32)


def test_the_experiment_config_composes_and_builds_the_task(fitted):
    _, _, data, _ = fitted
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=localize_shapes"])
    assert cfg.task.name == "localization" and cfg.data.name == "shapes" and cfg.data.max_objects == 1
    assert cfg.model.name == "resnet18" and cfg.model.width_mult == 0.5
    assert set(cfg.task) - {"name"} <= set(TASKS.options("localization"))
    task = build_task(cfg, data)
    assert isinstance(task, ObjectLocalizer) and task.hparams.class_names == list(data.class_names)
    assert task.hparams.box_loss_weight == 20.0 and task.monitor == "val/loc_acc"
