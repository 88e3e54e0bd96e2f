"""bf16 mixed precision (Lightning's ``precision="bf16-mixed"``) on every task, on the CPU: the convolutions run in
bf16, the losses are computed in fp32 and stay finite, the weights stay fp32, the logged figures are finite.
(On a CPU Lightning turns ``16-mixed`` into ``bf16-mixed``; fp16 with loss scaling needs a GPU.)"""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from vision_research.data import DigitsDataModule
from vision_research.data.shapes import ShapesDataModule, generate_shapes
from vision_research.speed import SpeedOptions
from vision_research.tasks import ImageClassifier, SemanticSegmenter, YoloDetector
from vision_research.tasks.localization import ObjectLocalizer

SHAPES = {"num_train": 16, "num_val": 8, "num_test": 4, "seed": 5}
SMALL = {"model": "resnet18", "model_options": {"width_mult": 0.25}}


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    return tmp_path_factory.mktemp("amp")


def shapes(root: Path, **options) -> ShapesDataModule:
    """Small shapes scenes (generated once per variant: one object per image for localisation)."""
    scenes = {**SHAPES, **({"max_objects": 1} if "max_objects" in options else {})}
    folder = generate_shapes(root / f"shapes_{len(scenes)}", image_size=64, **scenes)
    settings = {"scene_size": 64, "batch_size": 4, "num_workers": 0, "augment": "none", **SHAPES, **options}
    return ShapesDataModule(str(folder), **settings)


def build(name: str, root: Path) -> tuple[L.LightningModule, L.LightningDataModule]:
    if name == "classification":
        return ImageClassifier("resnet20", num_classes=10, in_chans=1), DigitsDataModule(image_size=32, batch_size=16)
    if name == "segmentation":
        task = SemanticSegmenter(**SMALL, num_classes=4, head={"hidden_channels": 16})
        return task, shapes(root, task="segmentation")
    if name == "localization":
        data = shapes(root, max_objects=1)
        return ObjectLocalizer(**SMALL, num_classes=3), data
    data = shapes(root)
    head = {"type": "v1", "stage": -2, "grid_size": 4, "hidden_channels": 16}
    if name == "detection_anchors":
        head = {"type": "anchors", "hidden_channels": 16}
    options = YoloDetector.options_from_data({**SMALL, "num_classes": 3, "head": head}, data)
    return YoloDetector(**options), data


class PrecisionProbe(Callback):
    """Records the dtype of the first convolution's output and each training step's loss."""

    def __init__(self) -> None:
        self.conv_dtypes: set[torch.dtype] = set()
        self.losses: list[torch.Tensor] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        conv = next(m for m in pl_module.modules() if isinstance(m, nn.Conv2d))
        conv.register_forward_hook(lambda module, inputs, output: self.conv_dtypes.add(output.dtype))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(outputs["loss"].detach())


@pytest.mark.parametrize(
    "name", ["classification", "segmentation", "detection_v1", "detection_anchors", "localization"]
)
def test_bf16_mixed_training_is_finite_with_fp32_losses(name, shapes_root, tmp_path):
    L.seed_everything(0, verbose=False)
    task, data = build(name, shapes_root)
    probe = PrecisionProbe()
    trainer = L.Trainer(
        accelerator="cpu",
        precision="bf16-mixed",
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=2,
        num_sanity_val_steps=0,
        callbacks=[probe, SpeedOptions(channels_last=True)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(task, datamodule=data)
    assert probe.conv_dtypes == {torch.bfloat16}  # autocast was on for the backbone
    assert len(probe.losses) == 3
    assert all(loss.dtype == torch.float32 and torch.isfinite(loss) for loss in probe.losses)
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in task.parameters())
    logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert any(k.startswith("val/") for k in logged) and any(k.startswith("train/loss") for k in logged)
    assert all(math.isfinite(v) for v in logged.values()), logged
