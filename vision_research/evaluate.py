"""``vr eval``: score a checkpoint on a split of the data it was trained on, or of another data set.

The checkpoint's run directory (``config.yaml``) gives the task, the datamodule and the Trainer settings
(precision), so that evaluating the tested checkpoint on its own test split reproduces the figures of training's
``metrics.json``. The whole split is scored: the run's ``limit_val_batches`` / ``limit_test_batches`` (``debug=fast``
tests a few batches) do not carry over, only the command line's own (``trainer.limit_test_batches=10``);
``metrics.json`` says how many images were scored. ``vr eval`` composes the run's config with the command line's
overrides (``data=NAME`` puts ``configs/data/NAME.yaml`` in place of the run's data node, ``data.KEY=VALUE`` /
``trainer.KEY=VALUE`` change a value: :mod:`vision_research.cli.checkpoint`); the data must give the targets the
checkpoint was trained on (a label per image, boxes or class maps) and have its classes — their names too, unless
``allow_class_rename`` — and input channels. The result goes to
``<run>/eval/<split>-<data name>[-<overrides>][-<backend>]``: ``config.yaml`` (the run's config as evaluated, with an
``eval`` node) and ``metrics.json``, with the task's own metric names — or another metric's (``metric=``,
:meth:`VisionTask.use_metric`: a detector's VOC AP).

``backend=`` other than ``eager`` (:mod:`vision_research.inference`: fused, compile, onnxruntime, int8, auto) scores
the split twice, eagerly and on the backend, built on the split's first batch (int8: on the validation split,
calibrated on its first ``calibration_images``, whose labels it never reads); ``metrics.json`` then also holds the
eager figures, each metric's change (backend − eager) and both scoring times.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from .build import build_datamodule, trainer_options
from .config_tree import override_key
from .data.registry import DATAMODULES
from .errors import ConfigError, check_value
from .inference import BACKENDS, build_from_batches, check_backend, serving
from .models import count_parameters
from .paths import check_can_create, path_safe
from .run_dir import EVAL, load_task, run_directory, write_config, write_metrics
from .speed import speed_options

# split → the Trainer method that evaluates it
SPLITS = {"test": "test", "val": "validate"}
# The Trainer options that score part of a split, at their whole-split values (score_whole_splits).
PARTIAL_SCORING = {"limit_val_batches": 1.0, "limit_test_batches": 1.0, "fast_dev_run": False, "overfit_batches": 0.0}
# What the targets of data are, by its datamodule's ``task`` option; data without one gives a label per image.
TARGETS = {"detection": "boxes (data.task=detection)", "segmentation": "class maps (data.task=segmentation)"}
LABELS = "a class label per image"
SHOWN_NAMES = 10  # class names an error lists


def targets(data: DictConfig) -> str:
    """What the datamodule of the data node ``data`` gives as targets: a label per image, boxes or class maps."""
    options = DATAMODULES.options(data.name)
    return TARGETS.get(data.get("task", options["task"]), LABELS) if "task" in options else LABELS


def check_targets(run_data: DictConfig, data: DictConfig, task_name: str, label: str) -> None:
    """The data node ``data`` (``label``) must give the targets of ``run_data``, the checkpoint's training data."""
    wanted, found = targets(run_data), targets(data)
    if found != wanted:
        raise ConfigError(
            f"{label} gives {found}, but this {task_name} checkpoint was trained on data={run_data.name}, which gives "
            f"{wanted}; evaluate it on data of that kind"
        )


def check_sizes(task: L.LightningModule, datamodule: L.LightningDataModule, label: str) -> None:
    """The data must have the checkpoint's classes and input channels, and its input size if the task was sized by
    the data's (detection: the grid and the box scaling)."""
    keys = ["num_classes", "in_chans", *(["image_size"] if "image_size" in task.hparams else [])]
    wanted = {key: task.hparams[key] for key in keys}
    found = {key: getattr(datamodule, key) for key in keys}
    if wanted != found:
        has = ", ".join(f"{k}={v}" for k, v in found.items())
        needs = ", ".join(f"{k}={v}" for k, v in wanted.items())
        raise ConfigError(f"{label} has {has}; the checkpoint was trained with {needs}")


def names_text(names: Sequence[str]) -> str:
    """``names`` for a one-line message: the first :data:`SHOWN_NAMES`, and how many there are when more."""
    shown = ", ".join(names[:SHOWN_NAMES])
    return f"[{shown}, ... ({len(names)} in all)]" if len(names) > SHOWN_NAMES else f"[{shown}]"


def renamed_classes(
    task: L.LightningModule, datamodule: L.LightningDataModule, label: str, allowed: bool
) -> dict[str, list[str]] | None:
    """The data's and the checkpoint's class names when they differ (None when they agree, or either has none):
    a ``ConfigError`` listing both unless ``allowed``, since the scores would be read under the other names."""
    checkpoint = list(task.hparams.get("class_names") or [])
    data = list(getattr(datamodule, "class_names", None) or [])
    if not checkpoint or not data or checkpoint == data:
        return None
    if not allowed:
        raise ConfigError(
            f"{label} names its classes {names_text(data)} but the checkpoint's are {names_text(checkpoint)}; pass "
            "allow_class_rename=true to score class i of the data as the checkpoint's class i"
        )
    return {"data": data, "checkpoint": checkpoint}


class ImageCount(L.Callback):
    """The number of images an evaluation loop scored (``images``)."""

    def __init__(self) -> None:
        self.images = 0

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.images += len(batch[0])

    on_validation_batch_end = on_test_batch_end


def default_output(
    run_dir: Path,
    split: str,
    data_name: str,
    overrides: Sequence[str] = (),
    backend: str = "eager",
    metric: str | None = None,
) -> Path:
    """``<run>/eval/<split>-<data name>``, with a path-safe suffix of the run config's overrides when there are any
    (``data.`` dropped from their keys; ``data=NAME`` is the data name), and the backend's and the metric's names when
    they are not the defaults."""
    shown = [o.removeprefix("data.") for o in overrides if override_key(o) != "data"]
    suffix = f"-{path_safe(','.join(shown))}" if shown else ""
    suffix += f"-{backend}" if backend != "eager" else ""
    suffix += f"-{metric}" if metric else ""
    return run_dir / EVAL / f"{split}-{data_name}{suffix}"


def score_whole_splits(cfg: DictConfig, overrides: Sequence[str]) -> None:
    """Set the options of :data:`PARTIAL_SCORING` that ``cfg.trainer`` holds (a run's ``debug=fast`` limits) to their
    whole-split values, but those ``overrides`` set (``trainer.limit_test_batches=10``)."""
    given = {override_key(o) for o in overrides}
    for key, value in PARTIAL_SCORING.items():
        if key in cfg.trainer and f"trainer.{key}" not in given:
            cfg.trainer[key] = value


def eval_trainer(cfg: DictConfig, output: Path) -> L.Trainer:
    """The run's Trainer settings (precision resolved as in training) on one device, without logger, checkpoints
    or model summary; a progress bar only on a terminal; counting the images it scores. Runs older than the speed
    switches get their defaults."""
    options = {
        **trainer_options(cfg),
        "devices": 1,
        "num_nodes": 1,
        "strategy": "auto",
        "enable_checkpointing": False,
        "enable_model_summary": False,
        "enable_progress_bar": sys.stderr.isatty(),
    }
    speed = speed_options(OmegaConf.to_container(cfg.speed) if "speed" in cfg else None)
    return L.Trainer(**options, logger=False, callbacks=[speed, ImageCount()], default_root_dir=str(output))


def scored_images(trainer: L.Trainer) -> int:
    """How many images the evaluation loops of :func:`eval_trainer`'s ``trainer`` scored."""
    return next(callback.images for callback in trainer.callbacks if isinstance(callback, ImageCount))


def score(
    trainer: L.Trainer, task: L.LightningModule, datamodule: L.LightningDataModule, split: str
) -> dict[str, float]:
    """``trainer.test`` or ``trainer.validate`` of ``task`` on ``datamodule``: the figures by the task's names."""
    metrics: dict[str, float] = {}
    for results in getattr(trainer, SPLITS[split])(task, datamodule=datamodule, verbose=False):
        metrics.update({k: float(v) for k, v in results.items()})
    return metrics


def timed_score(
    trainer: L.Trainer, task: L.LightningModule, datamodule: L.LightningDataModule, split: str
) -> tuple[dict[str, float], float]:
    """:func:`score` and the seconds it took."""
    start = time.perf_counter()
    metrics = score(trainer, task, datamodule, split)
    return metrics, round(time.perf_counter() - start, 2)


def image_batches(datamodule: L.LightningDataModule, loader: Iterable[Any]) -> Iterator[Tensor]:
    """The images of each batch of ``loader``, normalised by ``datamodule`` as the model sees them."""
    for images, _ in loader:
        yield datamodule.normalise(images)


def backend_forward(
    task: L.LightningModule,
    datamodule: L.LightningDataModule,
    split: str,
    backend: str,
    calibration_images: int,
) -> tuple[Callable[[Tensor], Any], str]:
    """``task``'s forward on ``backend`` for ``split``'s batches, and the backend's name (``auto`` resolved):
    built on the split's first batch (``auto`` times it there); ``int8`` built and calibrated on the validation
    split's first images instead."""
    if backend == "int8":  # the activation ranges come from validation images (their labels are not read)
        datamodule.setup("validate")
        loader = datamodule.val_dataloader()
    else:
        loader = datamodule.test_dataloader() if split == "test" else datamodule.val_dataloader()
    return build_from_batches(task, backend, image_batches(datamodule, loader), len(loader), calibration_images)


def evaluate(
    ckpt_path: str | Path,
    split: str = "test",
    output: str | Path | None = None,
    backend: str = "eager",
    calibration_images: int = 256,
    metric: str | None = None,
    allow_class_rename: bool = False,
    run_cfg: DictConfig | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Evaluate the checkpoint ``ckpt_path`` on the whole of ``split`` (test or val) of its run's data, on ``backend``
    (int8: calibrated on ``calibration_images`` validation images), with the task's metrics or ``metric``; data whose
    class names differ from the checkpoint's is an error unless ``allow_class_rename``. ``run_cfg`` is the run's config
    as composed with the command line's ``overrides`` (default: the run's ``config.yaml``). Writes ``config.yaml`` and
    ``metrics.json`` (with the number of ``images`` scored, and ``renamed_classes`` when allowed) to ``output``
    (default :func:`default_output`). Returns what metrics.json holds, plus ``output``. The arguments up to
    ``allow_class_rename`` are the keys of ``configs/eval.yaml``."""
    started = time.perf_counter()
    if split not in SPLITS:
        raise ConfigError(f"split={split!r}: choose {' or '.join(SPLITS)}")
    check_backend(backend, (*BACKENDS, "auto"))
    check_value("calibration_images", calibration_images, "a positive integer")
    check_value("allow_class_rename", allow_class_rename, "true or false")
    checkpoint = Path(ckpt_path)
    run, task = load_task(checkpoint)
    cfg = run if run_cfg is None else run_cfg
    if metric is not None:
        task.use_metric(metric)
    chosen_data = next((o.split("=", 1)[1] for o in overrides if override_key(o) == "data"), None)
    data_name = chosen_data or cfg.data.name
    label = f"data={data_name}" if chosen_data else f"the run's data node ({data_name})"
    output = (
        Path(output)
        if output
        else default_output(run_directory(checkpoint), split, data_name, overrides, backend, metric)
    )
    check_can_create(output, "output")
    check_targets(run.data, cfg.data, run.task.name, label)
    score_whole_splits(cfg, overrides)
    cfg.eval = {"checkpoint": str(checkpoint.resolve()), "split": split, "backend": backend}

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg)
    datamodule.setup(SPLITS[split])
    check_sizes(task, datamodule, label)
    renamed = renamed_classes(task, datamodule, label, allow_class_rename)
    output.mkdir(parents=True, exist_ok=True)
    write_config(output, cfg)
    summary: dict[str, Any] = {
        "checkpoint": cfg.eval.checkpoint,
        "split": split,
        "parameters": count_parameters(task),
        **({"renamed_classes": renamed} if renamed else {}),
    }
    trainer = eval_trainer(cfg, output)
    metrics, seconds = timed_score(trainer, task, datamodule, split)
    summary.update(
        metrics=metrics,
        images=scored_images(trainer),
        precision=str(trainer.precision),
        backend="eager",
        scoring_seconds=seconds,
    )
    if backend != "eager":
        task.to(trainer.strategy.root_device)
        forward, backend = backend_forward(task, datamodule, split, backend, calibration_images)
        with serving(task, forward):
            fast, fast_seconds = timed_score(eval_trainer(cfg, output), task, datamodule, split)
        summary.update(
            metrics=fast,
            backend=backend,
            scoring_seconds=fast_seconds,
            eager_metrics=metrics,
            eager_scoring_seconds=seconds,
            change={key: fast[key] - value for key, value in metrics.items()},
        )
    summary["seconds"] = round(time.perf_counter() - started, 2)
    write_metrics(output, summary)
    return {**summary, "output": str(output)}
