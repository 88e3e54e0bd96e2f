"""YoloDetector: a short run, COCO AP equal to pycocotools on the same detections, VOC AP (use_metric) equal to
voc_evaluate on them, anchors from k-means, vr predict."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.data import DataLoader

from vision_research.constants import IMAGENET_MEAN, IMAGENET_STD
from vision_research.data.annotated import AnnotatedImageDataset, collate_detection
from vision_research.data.base import normalise
from vision_research.data.formats import coco_dict, read_coco
from vision_research.data.shapes import ShapesDataModule, generate_shapes
from vision_research.data.transforms import build_transforms
from vision_research.errors import ConfigError
from vision_research.geometry import boxes_to_original
from vision_research.metrics import voc_evaluate
from vision_research.tasks import YoloDetector

SHAPES = {"num_train": 40, "num_val": 8, "num_test": 8, "seed": 7}
V1_HEAD = {"type": "v1", "stage": -2, "grid_size": 4, "num_boxes": 2, "hidden_channels": 32}


def quiet_trainer(root, **options) -> L.Trainer:
    defaults = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    return L.Trainer(default_root_dir=root, num_sanity_val_steps=0, **{**defaults, **options})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = generate_shapes(tmp_path_factory.mktemp("det") / "shapes", image_size=64, **SHAPES)
    return ShapesDataModule(str(root), scene_size=64, batch_size=8, num_workers=0, augment="flip", **SHAPES)


@pytest.fixture(scope="module")
def fitted(data, tmp_path_factory):
    L.seed_everything(0, verbose=False)
    options = YoloDetector.options_from_data(
        {"model": "resnet18", "num_classes": 3, "model_options": {"width_mult": 0.25}, "head": V1_HEAD}, data
    )
    task = YoloDetector(**options, optimizer={"name": "adamw", "lr": 3e-3})
    trainer = quiet_trainer(tmp_path_factory.mktemp("fit"), max_epochs=3)
    trainer.fit(task, datamodule=data)
    return trainer, task


def test_every_loss_term_and_coco_figure_is_logged(fitted):
    trainer, task = fitted
    logged = set(trainer.callback_metrics)
    assert {f"train/loss_{t}" for t in ("xy", "wh", "obj", "noobj", "cls")} <= logged
    assert {"val/map", "val/map_50", "val/map_75", "val/mar_100", "val/loss"} <= logged
    assert task.hparams.image_size == 64 and task.hparams.category_ids == [1, 2, 3]


def test_test_map_equals_pycocotools_on_the_same_detections(fitted, data):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    trainer, task = fitted
    (result,) = trainer.test(task, datamodule=data, verbose=False)
    task.eval()
    detections = []
    with torch.no_grad():
        for images, targets in data.test_dataloader():
            images, targets = data.on_after_batch_transfer((images, targets), 0)
            for found, target in zip(task.detect(task(images)), targets, strict=True):
                height, width = (int(v) for v in target["orig_size"])
                boxes = boxes_to_original(found["boxes"], height, width, 64)
                for (x1, y1, x2, y2), score, label in zip(
                    boxes.tolist(), found["scores"].tolist(), found["labels"].tolist(), strict=True
                ):
                    bbox = [x1, y1, x2 - x1, y2 - y1]
                    detections.append(
                        {"image_id": target["image_id"], "category_id": label + 1, "bbox": bbox, "score": score}
                    )
    assert detections, "the short run must produce candidate detections at score 0.001"
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = coco_dict(data.annotations("test"))
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(detections), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    assert result["test/map"] == pytest.approx(evaluation.stats[0], abs=1e-6)
    assert result["test/map_50"] == pytest.approx(evaluation.stats[1], abs=1e-6)
    assert result["test/mar_100"] == pytest.approx(evaluation.stats[8], abs=1e-6)


def test_voc_map_through_trainer_test_equals_voc_evaluate_on_the_same_detections(fitted, data):
    """use_metric("voc12") / ("voc07"): the test split scored with VOC AP (IoU 0.5, difficult objects ignored) in
    input pixels; "coco" restores the COCO figures."""
    trainer, task = fitted
    task.eval()
    predictions, truths = [], []
    with torch.no_grad():
        for images, targets in data.test_dataloader():
            images, targets = data.on_after_batch_transfer((images, targets), 0)
            predictions += task.detect(task(images))
            truths += targets
    try:
        for name, use_07_metric in (("voc12", False), ("voc07", True)):
            task.use_metric(name)
            (result,) = trainer.test(task, datamodule=data, verbose=False)
            expected = voc_evaluate(truths, predictions, num_classes=3, use_07_metric=use_07_metric)["map"]
            assert set(result) == {"test/loss", f"test/{name}_map"}
            assert result[f"test/{name}_map"] == pytest.approx(expected, abs=1e-6)
            assert expected > 0  # the short run finds shapes: the equality is not one of two zeros
    finally:
        task.use_metric("coco")
    (coco,) = trainer.test(task, datamodule=data, verbose=False)
    assert {"test/map", "test/map_50", "test/mar_100"} <= set(coco) and "test/voc12_map" not in coco


def test_an_unknown_metric_is_a_one_line_config_error():
    task = YoloDetector("resnet18", num_classes=3, image_size=64, model_options={"width_mult": 0.25}, head=V1_HEAD)
    assert task.evaluation_metrics == ("coco", "voc07", "voc12")
    with pytest.raises(ConfigError, match=r"^metric=voc10: YoloDetector scores with its own metrics; choose coco, "):
        task.use_metric("voc10")


def test_a_bare_dataloader_evaluates_the_detector_as_its_datamodule(fitted, data, tmp_path):
    """No datamodule anywhere: the test split's COCO file read into a dataset, batched and normalised by a plain
    DataLoader, scored by a new Trainer; the figures equal those of the run's datamodule."""
    trainer, task = fitted
    (with_datamodule,) = trainer.test(task, datamodule=data, verbose=False)
    annotations = read_coco(Path(data.root) / "annotations" / "instances_test.json")
    dataset = AnnotatedImageDataset(annotations, build_transforms("none", 64, train=False))

    def collate(batch: list) -> tuple:
        images, targets = collate_detection(batch)
        return normalise(images, IMAGENET_MEAN, IMAGENET_STD), targets

    loader = DataLoader(dataset, batch_size=3, collate_fn=collate)
    (bare,) = quiet_trainer(tmp_path).test(task, dataloaders=loader, verbose=False)
    assert bare == with_datamodule
    assert bare["test/map_50"] > 0  # the short run finds shapes: the equality is not one of two zeros


def test_anchor_head_gets_kmeans_anchors_from_the_training_boxes(data, tmp_path):
    """...and fits with the localisation switches on: a PAN neck, the CIoU box loss, several anchors per object."""
    head = {"type": "anchors", "strides": [16, 32], "anchors": "kmeans", "anchors_per_scale": 2, "hidden_channels": 16}
    head |= {"neck": "pan", "neck_channels": 16}
    options = YoloDetector.options_from_data(
        {"model": "resnet18", "num_classes": 3, "model_options": {"width_mult": 0.25}, "head": head}, data
    )
    anchors = options["head"]["anchors"]
    assert [len(scale) for scale in anchors] == [2, 2]
    areas = [w * h for scale in anchors for w, h in scale]
    assert areas == sorted(areas)  # the smallest clusters go to the finest stride
    sizes = [o.box for r in data.annotations("train").images for o in r.objects]
    widths = [x2 - x1 for x1, _, x2, _ in sizes]
    assert min(widths) <= anchors[0][0][0] and anchors[-1][-1][0] <= max(widths)
    task = YoloDetector(**options, loss={"box_loss": "ciou", "lambda_box": 2.0, "assign_iou": 0.3})
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    trainer.fit(task, datamodule=data)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert (
        torch.isfinite(trainer.callback_metrics["train/loss_box"]) and "train/loss_xy" not in trainer.callback_metrics
    )
    trainer.save_checkpoint(tmp_path / "a.ckpt")
    rebuilt = YoloDetector.load_from_checkpoint(tmp_path / "a.ckpt")
    assert rebuilt.hparams.head["anchors"] == anchors


@pytest.mark.parametrize("head", [V1_HEAD, {"type": "anchors", "strides": [32], "anchors": [[[20, 20], [40, 30]]]}])
def test_loss_is_fp32_and_finite_under_bf16_autocast(head, data):
    task = YoloDetector("resnet18", num_classes=3, image_size=64, model_options={"width_mult": 0.25}, head=head)
    images, targets = data.on_after_batch_transfer(next(iter(data.train_dataloader())), 0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = task.compute_loss(task(images), targets)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()


def test_predict_writes_coco_json_and_drawn_images(fitted, data, tmp_path):
    from vision_research.cli import main

    trainer, task = fitted
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    trainer.save_checkpoint(run / "checkpoints" / "last.ckpt")
    config = {"task": {"name": "detection"}, "data": {"name": "shapes", "image_size": 64}}
    (run / "config.yaml").write_text(OmegaConf.to_yaml(config))
    photos = tmp_path / "photos"
    photos.mkdir()
    image, _ = data.dataset("test")[0]
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(photos / "a.png")
    Image.fromarray(np.full((40, 100, 3), 90, np.uint8)).save(photos / "wide.jpg")
    assert main(["predict", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", f"input={photos}"]) == 0
    out = run / "predictions"
    assert sorted(p.name for p in out.iterdir()) == ["a.png.jpg", "predictions.json", "wide.jpg.jpg"]
    results = json.loads((out / "predictions.json").read_text())
    assert {r["image_id"] for r in results} <= {0, 1}
    for r in results:
        assert r["category_id"] in (1, 2, 3) and 0 <= r["score"] <= 1
        x, y, w, h = r["bbox"]
        limit = (64, 64) if r["file_name"] == "a.png" else (100, 40)
        assert x >= 0 and y >= 0 and x + w <= limit[0] + 1e-3 and y + h <= limit[1] + 1e-3
    assert Image.open(out / "wide.jpg.jpg").size == (100, 40)

    # The fast path (batch norms folded) finds the same boxes, to float rounding; batch_size=1: two short batches.
    fused = tmp_path / "fused"
    args = [f"input={photos}", f"output={fused}", "backend=fused", "batch_size=1"]
    assert main(["predict", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", *args]) == 0
    found = json.loads((fused / "predictions.json").read_text())
    assert [(r["file_name"], r["category_id"]) for r in found] == [(r["file_name"], r["category_id"]) for r in results]
    for got, want in zip(found, results, strict=True):
        assert got["bbox"] == pytest.approx(want["bbox"], abs=1e-3) and got["score"] == pytest.approx(
            want["score"], abs=1e-4
        )


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="head.type must be one of v1, anchors"):
        YoloDetector(num_classes=3, head={"type": "v9"})
    with pytest.raises(ConfigError, match=r"has no option \['grid'\]"):
        YoloDetector(num_classes=3, head={"type": "v1", "grid": 7})
    with pytest.raises(ConfigError, match="one list of \\[w, h\\] per stride"):
        YoloDetector(num_classes=3, head={"type": "anchors", "strides": [16, 32], "anchors": [[[10, 10]]]})
    with pytest.raises(ConfigError, match="no stage at stride 64"):
        YoloDetector(num_classes=3, head={"type": "anchors", "strides": [64], "anchors": [[[10, 10]]]})
    with pytest.raises(ConfigError, match="postprocess has no option"):
        YoloDetector(num_classes=3, postprocess={"nms": 0.5})
    with pytest.raises(ConfigError, match="task.loss.box_loss=ciou is an option of the anchor head's loss"):
        YoloDetector(num_classes=3, loss={"lambda_coord": 5.0, "box_loss": "ciou"})
    default_anchor_options = {"box_loss": "mse", "lambda_box": 5.0, "assign_iou": None}  # configs/task/detection.yaml
    assert YoloDetector(num_classes=3, head=V1_HEAD, loss=default_anchor_options).criterion.lambda_coord == 5.0


@pytest.mark.parametrize("head", [V1_HEAD, {"type": "anchors", "strides": [8], "anchors": [[[20, 20], [40, 30]]]}])
def test_every_trained_parameter_gets_a_gradient_when_the_head_reads_an_inner_stage(head, data):
    """DDP (without find_unused_parameters) fails on a trainable parameter the loss does not reach: the stages
    deeper than the one the head reads are frozen (ResNet-18's layer3 and layer4 at stride 8, its layer4 under the v1
    head on stage -2)."""
    task = YoloDetector("resnet18", num_classes=3, image_size=64, model_options={"width_mult": 0.25}, head=head)
    images, targets = data.on_after_batch_transfer(next(iter(data.train_dataloader())), 0)
    task.compute_loss(task(images), targets)["loss"].backward()
    trained = {name for name, p in task.named_parameters() if p.requires_grad}
    assert trained and all(p.grad is not None for name, p in task.named_parameters() if name in trained)
    assert not any(name.startswith("backbone.layer4.") for name in trained)
    assert any(name.startswith("backbone.layer2.") for name in trained)
