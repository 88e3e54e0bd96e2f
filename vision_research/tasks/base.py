"""What every task shares: pretrained weights (a local file or a ``torchvision:`` / ``timm:`` tag) loaded when fitting
starts, the optimizer and schedule, and the hook ``vr predict`` calls (``predict_images``)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import numpy as np
from torch import Tensor, nn

from ..constants import dataset_stats
from ..errors import ConfigError
from ..models.hub import load_weights
from ..optim import backbone_stages, build_optimizer, build_scheduler
from .contract import TaskData, options_from


@dataclass
class Prediction:
    """What ``vr predict`` writes for one image; a task fills the fields it has."""

    row: list[str] = field(default_factory=list)  # predictions.csv cells after the file name (prediction_columns)
    results: list[dict] | None = None  # COCO results in the original frame (predictions.json); None: not a detector
    mask: np.ndarray | None = None  # a class map at the original size, written as <name>.png in the VOC palette
    drawing: np.ndarray | None = None  # the original image (H, W, 3 uint8) with what was found drawn: <name>.jpg


class VisionTask(L.LightningModule):
    """Base of the tasks: ``monitor`` names the primary metric; hparams hold ``pretrained``,
    ``pretrained_source``, ``optimizer`` and ``scheduler`` (dicts described in :mod:`vision_research.optim`),
    and the data's ``mean`` / ``std`` (``tasks.contract``). A task's ``val_metrics`` / ``test_metrics`` (a
    torchmetrics ``Metric`` or ``MetricCollection``), if it keeps them there, are reset as each evaluation epoch
    starts (:meth:`_fresh_metrics`).

    ``vr predict`` fits each image to the input as ``preprocessing`` says ("letterbox", the detection pipelines'
    evaluation transform, or "resize_crop", the classification one), normalises it with the task's ``mean`` /
    ``std`` and writes what :meth:`predict_images` returns (``prediction_columns`` head ``predictions.csv``)."""

    monitor: str
    monitor_mode: str = "max"
    preprocessing: str = "letterbox"
    prediction_columns: tuple[str, ...] = ()
    _pretrained_loaded: bool = False

    @classmethod
    def options_from_data(cls, options: dict[str, Any], datamodule: TaskData) -> dict[str, Any]:
        """``options`` completed with what the data knows: the ``TaskData`` facts the constructor names (``options``
        given win); a task that needs more (detection: category ids, anchors) extends this."""
        accepted = list(inspect.signature(cls.__init__).parameters)
        return {**options_from(datamodule, accepted), **options}

    def pretrained_module(self) -> nn.Module:
        """The module the ``pretrained`` checkpoint is loaded into (the backbone)."""
        raise NotImplementedError

    @property
    def input_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The per-channel (mean, std) the task's inputs are normalised with: the data's (``mean`` / ``std`` hparams),
        else ImageNet's fitted to ``in_chans`` (``constants.dataset_stats``: a task built without data, an old run)."""
        mean, std = self.hparams.get("mean"), self.hparams.get("std")
        if mean is None or std is None or len(mean) != self.hparams.in_chans:
            return dataset_stats("imagenet", self.hparams.in_chans)
        return tuple(mean), tuple(std)

    @property
    def class_names(self) -> list[str]:
        """The class names the task was built with, or else the class indices as text."""
        return list(self.hparams.get("class_names") or [str(i) for i in range(self.hparams.num_classes)])

    def predict_images(
        self, images: Tensor, originals: Sequence[np.ndarray], image_ids: Sequence[int]
    ) -> list[Prediction]:
        """What to write for each of ``images`` (the normalised inputs of the ``originals``, H×W×3 uint8 arrays);
        ``image_ids`` number them for COCO results."""
        raise ConfigError(
            f"{type(self).__name__} does not predict image files: give it a predict_images method (tasks/base.py)"
        )

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.load_pretrained()

    def load_pretrained(self) -> None:
        """Load the ``pretrained`` weights into :meth:`pretrained_module`, once (fitting starts with it)."""
        if not self.hparams.pretrained or self._pretrained_loaded:
            return
        hparams = self.hparams
        new_classifier = hparams.get("new_classifier", False)
        report, where = load_weights(
            self.pretrained_module(), hparams.pretrained, hparams.pretrained_source, new_classifier
        )
        message = f"pretrained weights from {where}: {report}"
        if self._trainer is not None:
            self.print(message)
        else:  # set up by hand: Lightning's print needs a trainer
            print(message)
        self._pretrained_loaded = True

    def _fresh_metrics(self, stage: str) -> None:
        """New states for the ``<stage>_metrics``, made in the grad mode of the loop that is about to update them.

        ``trainer.validate`` and ``trainer.test`` run under ``torch.inference_mode``, where torchmetrics' reset at
        the epoch's end re-creates the states as inference tensors; a later loop under ``no_grad`` (the validation
        of ``trainer.fit``, its sanity check first) would then fail at the first in-place update (``MeanMetric``,
        the confusion matrix): "Inplace update to inference tensor outside InferenceMode".
        """
        metrics = getattr(self, f"{stage}_metrics", None)
        if metrics is not None:
            metrics.reset()

    def on_validation_epoch_start(self) -> None:
        self._fresh_metrics("val")

    def on_test_epoch_start(self) -> None:
        self._fresh_metrics("test")

    def _logging_images(self) -> bool:
        """Whether this validation epoch logs pictures (``log_images_every_n_epochs``, a TensorBoard logger)."""
        every = self.hparams.get("log_images_every_n_epochs", 0)
        experiment = getattr(self.logger, "experiment", None)
        return bool(every) and hasattr(experiment, "add_image") and self.current_epoch % every == 0

    def configure_optimizers(self) -> Any:
        options = dict(self.hparams.optimizer or {})
        if options.get("backbone_lr_mult", 1.0) != 1.0 or options.get("layer_decay") is not None:
            backbone = self.pretrained_module()  # the backbone's layers get their own, named parameter groups
            options.update(backbone=backbone, stages=backbone_stages(backbone))
        optimizer = build_optimizer(self, **options)
        scheduler_cfg = dict(self.hparams.scheduler or {"name": "none"})
        scheduler = build_scheduler(
            optimizer, int(self.trainer.estimated_stepping_batches), int(self.trainer.max_epochs or 0), **scheduler_cfg
        )
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
