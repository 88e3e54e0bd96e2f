"""What every task shares: pretrained weights (a local file or a ``torchvision:`` / ``timm:`` tag) loaded when fitting
starts, the optimizer and schedule, and the hook ``vr predict`` calls (``predict_images``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import numpy as np
from torch import Tensor, nn

from ..constants import dataset_stats
from ..errors import ConfigError
from ..models import create_model
from ..models.hub import load_weights
from ..optim import backbone_stages, build_optimizer, build_scheduler
from ..registry import accepted_options
from ..visualize import denormalize
from .contract import TaskData, options_from


@dataclass
class Prediction:
    """What ``vr predict`` writes for one image; a task fills the fields it has."""

    row: list[str] = field(default_factory=list)  # predictions.csv cells after the file name (prediction_columns)
    results: list[dict] | None = None  # COCO results in the original frame (predictions.json); None: not a detector
    mask: np.ndarray | None = None  # a class map at the original size, written as <name>.png in the VOC palette
    drawing: np.ndarray | None = None  # the original image (H, W, 3 uint8) with what was found drawn: <name>.jpg


class VisionTask(L.LightningModule):
    """Base of the tasks. Its constructor takes the options every task shares — declared once, here — and saves
    them with the subclass's own as hparams (Lightning collects the arguments of every ``__init__`` of the chain):

    - ``model`` (a registered backbone or ``timm:<name>``) with ``model_options``, ``num_classes`` and ``in_chans``,
      which a task lists again for its own defaults, and passes on;
    - ``pretrained`` / ``pretrained_source`` (loaded when fitting starts, into :meth:`pretrained_module`): a local
      checkpoint laid out as the source says (native, torchvision or timm), or a ``torchvision:`` / ``timm:`` tag;
    - ``optimizer`` and ``scheduler`` (dicts described in :mod:`vision_research.optim`);
    - ``class_names``, ``mean`` and ``std``: the data's facts (``tasks.contract``).

    ``monitor`` names the primary metric. A task's ``val_metrics`` / ``test_metrics`` (a torchmetrics ``Metric`` or
    ``MetricCollection``), if it keeps them there, are reset as each evaluation epoch starts (:meth:`_fresh_metrics`).

    ``vr predict`` fits each image to the input as ``preprocessing`` says ("letterbox", the detection pipelines'
    evaluation transform, or "resize_crop", the classification one), normalises it with the task's ``mean`` /
    ``std`` and writes what :meth:`predict_images` returns (``prediction_columns`` head ``predictions.csv``).

    ``vr export`` writes the task's ``forward``; the task says what the graph's outputs are called
    (``output_names``, or :meth:`export_output_names`), which input axes stay free besides the batch
    (``free_input_axes``), what its sidecar adds (:meth:`export_facts`) and how the exported outputs become
    predictions (:meth:`postprocess_exported`)."""

    monitor: str
    monitor_mode: str = "max"
    preprocessing: str = "letterbox"
    prediction_columns: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    # Metrics `vr eval metric=NAME` can score with instead of the task's own (use_metric); none by default.
    evaluation_metrics: tuple[str, ...] = ()
    free_input_axes: dict[int, str] = {}  # read only: e.g. {2: "height", 3: "width"}
    _pretrained_loaded: bool = False

    def __init__(
        self,
        model: str = "resnet18",
        num_classes: int = 10,
        in_chans: int = 3,
        model_options: dict[str, Any] | None = None,
        pretrained: str | None = None,
        pretrained_source: str = "native",
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if class_names is not None and len(class_names) != num_classes:
            raise ConfigError(f"{len(class_names)} class names for {num_classes} classes")
        # The logger gets the whole resolved config at the end of the run, with the final metrics.
        self.save_hyperparameters(logger=False)

    def create_backbone(self, **options: Any) -> nn.Module:
        """The task's ``model`` with its ``model_options`` for ``in_chans`` input channels (``options``: more, e.g. a
        classifier's ``num_classes``)."""
        hparams = self.hparams
        return create_model(hparams.model, in_chans=hparams.in_chans, **(hparams.model_options or {}), **options)

    @classmethod
    def options_from_data(cls, options: dict[str, Any], datamodule: TaskData) -> dict[str, Any]:
        """``options`` completed with what the data knows: the ``TaskData`` facts the constructor names (``options``
        given win); a task that needs more (detection: category ids, anchors) extends this."""
        return {**options_from(datamodule, list(accepted_options(cls))), **options}

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

    def use_metric(self, name: str) -> None:
        """Score validation and test with the metric ``name`` (one of ``evaluation_metrics``) instead of the task's
        own: ``vr eval metric=NAME``. A task without others says so."""
        others = f"; choose {', '.join(self.evaluation_metrics)}" if self.evaluation_metrics else " only"
        raise ConfigError(f"metric={name}: {type(self).__name__} scores with its own metrics{others}")

    def export_output_names(self, count: int) -> list[str]:
        """The names of the ``count`` outputs of :meth:`forward` in an exported graph: ``output_names`` when it
        names as many, else ``output0``, ``output1``, ..."""
        names = list(self.output_names)
        return names if len(names) == count else [f"output{i}" for i in range(count)]

    def export_facts(self) -> dict[str, Any]:
        """What an export's sidecar holds for this task beyond what every task's holds (input, normalisation, class
        names, outputs); read before the task is cast to the export's dtype."""
        return {}

    @classmethod
    def postprocess_exported(cls, outputs: Sequence[Tensor], facts: Mapping[str, Any]) -> Any:
        """What an exported graph's ``outputs`` (in the file's order) mean, given its sidecar's ``facts``: by default
        the outputs themselves (logits, class scores, ...)."""
        return list(outputs)

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


class ImageLoggingTask(VisionTask):
    """A task that shows its predictions on the first validation images in TensorBoard (``val/predictions``): every
    ``log_images_every_n_epochs`` epochs (0: never), on ``num_images_to_log`` images. Its other options are
    :class:`VisionTask`'s."""

    def __init__(self, *, log_images_every_n_epochs: int = 5, num_images_to_log: int = 4, **options: Any) -> None:
        super().__init__(**options)

    def _logging_images(self) -> bool:
        """Whether this validation epoch logs pictures (``log_images_every_n_epochs``, a TensorBoard logger)."""
        every = self.hparams.log_images_every_n_epochs
        experiment = getattr(self.logger, "experiment", None)
        return bool(every) and hasattr(experiment, "add_image") and self.current_epoch % every == 0

    def _pictures(self, images: Tensor) -> Tensor:
        """The first ``num_images_to_log`` of a batch's normalised ``images``, back to uint8 pictures."""
        return denormalize(images[: self.hparams.num_images_to_log], *self.input_stats)

    def _log_picture(self, picture: Tensor) -> None:
        """Log ``picture`` (uint8 [3, H, W]: the predictions drawn on ``_pictures``) as ``val/predictions``."""
        self.logger.experiment.add_image("val/predictions", picture, self.global_step)
