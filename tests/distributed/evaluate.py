"""Validate one task on 1 or 2 CPU processes (DDP over gloo) and write rank 0's metrics as JSON.

Run as a script (Lightning's DDP launcher starts the second process by re-running the command):
``python tests/distributed/evaluate.py TASK DEVICES OUT.json DATA_ROOT [--no-sync]``. ``--no-sync`` turns off
the metrics' cross-process synchronisation, to show that the comparison in test_ddp.py would catch it.
"""

from __future__ import annotations

import json
import os
import sys
import warnings

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import lightning as L  # noqa: E402
import torch  # noqa: E402

from vision_research.data import DigitsDataModule  # noqa: E402
from vision_research.data.shapes import ShapesDataModule  # noqa: E402
from vision_research.tasks import ImageClassifier, SemanticSegmenter, YoloDetector  # noqa: E402
from vision_research.train import close_process_group  # noqa: E402

SHAPES = {"num_train": 8, "num_val": 7, "num_test": 2, "seed": 11}  # 7: an odd count, padded by a DDP sampler


class OracleDetector(YoloDetector):
    """Detections made from the targets (shifted by a few pixels, one false positive per image), so that the
    COCO figures are neither 0 nor 1 without training: what is under test is how they are gathered."""

    def _evaluate(self, batch, stage):
        self._targets = batch[1]
        return super()._evaluate(batch, stage)

    def detect(self, raw):
        found = []
        for target in self._targets:
            shift = float(target["image_id"] % 4)
            boxes = torch.cat([target["boxes"] + shift, torch.tensor([[1.0, 1.0, 20.0, 20.0]])])
            scores = torch.linspace(0.9, 0.2, len(boxes))
            labels = torch.cat([target["labels"], torch.tensor([int(target["image_id"]) % 3])])
            found.append({"boxes": boxes, "scores": scores, "labels": labels})
        return found


def build(task: str, root: str) -> tuple[L.LightningModule, L.LightningDataModule]:
    if task == "classification":
        data = DigitsDataModule(image_size=32, eval_batch_size=50)
        return ImageClassifier("lenet5_modern", num_classes=10, in_chans=1), data
    options = {"scene_size": 64, "num_workers": 0, "eval_batch_size": 2, "augment": "none", **SHAPES}
    if task == "segmentation":
        data = ShapesDataModule(root, task="segmentation", **options)
        head = {"hidden_channels": 16}
        return SemanticSegmenter("resnet18", 4, model_options={"width_mult": 0.25}, head=head), data
    data = ShapesDataModule(root, **options)
    head = {"type": "v1", "stage": -2, "grid_size": 4, "hidden_channels": 16}
    settings = YoloDetector.options_from_data(
        {"model": "resnet18", "num_classes": 3, "model_options": {"width_mult": 0.25}, "head": head}, data
    )
    return OracleDetector(**settings), data


def main() -> None:
    task_name, devices, out, root = sys.argv[1:5]
    torch.set_num_threads(1)
    L.seed_everything(0, verbose=False)
    task, data = build(task_name, root)
    if "--no-sync" in sys.argv:
        for metric in task.modules():
            if hasattr(metric, "sync_on_compute"):
                metric.sync_on_compute = metric._to_sync = False
    trainer = L.Trainer(
        accelerator="cpu",
        devices=int(devices),
        strategy="ddp" if int(devices) > 1 else "auto",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    (metrics,) = trainer.validate(task, datamodule=data, verbose=False)
    if trainer.global_rank == 0:
        with open(out, "w") as f:
            json.dump({k: float(v) for k, v in metrics.items()}, f)
    close_process_group()


if __name__ == "__main__":
    main()
