"""What every task shares: local pretrained weights loaded when fitting starts, the optimizer and schedule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from torch import nn

from ..models import load_pretrained
from ..optim import build_optimizer, build_scheduler


class VisionTask(L.LightningModule):
    """Base of the tasks: ``monitor`` names the primary metric; hparams hold ``pretrained``,
    ``pretrained_source``, ``optimizer`` and ``scheduler`` (dicts described in :mod:`vision_research.optim`).
    A task's ``val_metrics`` / ``test_metrics`` (a torchmetrics ``Metric`` or ``MetricCollection``), if it keeps
    them there, are reset as each evaluation epoch starts (:meth:`_fresh_metrics`)."""

    monitor: str
    monitor_mode: str = "max"
    _pretrained_loaded: bool = False

    @classmethod
    def options_from_data(cls, options: dict[str, Any], datamodule: Any) -> dict[str, Any]:
        """Complete the task's options with what only the data knows (input size, anchors); default: none."""
        return options

    def pretrained_module(self) -> nn.Module:
        """The module the ``pretrained`` checkpoint is loaded into (the backbone)."""
        raise NotImplementedError

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.hparams.pretrained and not self._pretrained_loaded:
            path = Path(self.hparams.pretrained)
            report = load_pretrained(self.pretrained_module(), path, self.hparams.pretrained_source)
            self.print(f"pretrained weights from {path}: {report}")
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
        optimizer = build_optimizer(self, **(self.hparams.optimizer or {}))
        scheduler_cfg = dict(self.hparams.scheduler or {"name": "none"})
        scheduler = build_scheduler(
            optimizer, int(self.trainer.estimated_stepping_batches), int(self.trainer.max_epochs or 0), **scheduler_cfg
        )
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
