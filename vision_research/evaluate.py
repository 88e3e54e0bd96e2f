"""``vr eval``: score a checkpoint on a split of the data it was trained on, or of another data set.

The checkpoint's run directory (``config.yaml``) gives the task, the datamodule and the Trainer settings
(precision, ``limit_*_batches``), so that evaluating the tested checkpoint on its own test split reproduces the
figures of training's ``metrics.json``. ``data=NAME`` replaces the data node by ``configs/data/NAME.yaml`` and
``data.KEY=VALUE`` overrides its keys; the new data must have the checkpoint's classes and input channels.
The result goes to ``<run>/eval/<split>-<data name>[-<overrides>][-<backend>]``: ``config.yaml`` (the run's config
with the data node that was used and an ``eval`` node) and ``metrics.json``, with the task's own metric names.

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
import yaml
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from .build import build_datamodule, trainer_options
from .config_tree import config_dir, flat_keys
from .errors import ConfigError, close_matches, unknown_name_error
from .inference import BACKENDS, build_from_batches, check_backend, serving
from .models import count_parameters
from .paths import path_safe
from .run_dir import EVAL, load_task, run_directory, write_config, write_metrics
from .speed import speed_options

# split → the Trainer method that evaluates it
SPLITS = {"test": "test", "val": "validate"}


def data_node(run_data: DictConfig, name: str | None = None, overrides: Sequence[str] = ()) -> DictConfig:
    """The run's data node, or ``configs/data/<name>.yaml`` in its place, with ``KEY=VALUE`` ``overrides``
    (values parsed as YAML); unknown names, unknown keys and required values left unset are ``ConfigError``s."""
    # A standalone copy: key paths (and errors) are relative to the data node.
    node = OmegaConf.create(OmegaConf.to_container(_data_config(name) if name else run_data))
    source = f"configs/data/{name}.yaml" if name else f"the run's data node ({run_data.name})"
    keys = flat_keys(node)
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep:
            raise ConfigError(f"data override '{override}': expected data.KEY=VALUE")
        if key not in keys:
            matches = close_matches(key, keys)
            hint = f" Did you mean: {', '.join('data.' + m for m in matches)}?" if matches else ""
            raise ConfigError(f"unknown data key 'data.{key}' in {source}.{hint}")
        OmegaConf.update(node, key, yaml.safe_load(value), merge=False)
    missing = sorted(OmegaConf.missing_keys(node))
    if missing:
        raise ConfigError(f"{source}: {', '.join('data.' + k for k in missing)} must be set (data.{missing[0]}=...)")
    return node


def _data_config(name: str) -> DictConfig:
    """``configs/data/<name>.yaml`` composed by Hydra (its own defaults list applied)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    names = sorted(p.stem for p in (config_dir() / "data").glob("*.yaml"))
    if name not in names:
        raise unknown_name_error("data config", name, names, hint="(configs/data/)")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        node = compose(config_name=f"data/{name}").data
    GlobalHydra.instance().clear()
    return node


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


def default_output(run_dir: Path, split: str, data_name: str, overrides: Sequence[str], backend: str = "eager") -> Path:
    """``<run>/eval/<split>-<data name>``, with a path-safe suffix of the data overrides when there are any and the
    backend's name when it is not eager."""
    suffix = f"-{path_safe(','.join(overrides))}" if overrides else ""
    suffix += f"-{backend}" if backend != "eager" else ""
    return run_dir / EVAL / f"{split}-{data_name}{suffix}"


def eval_trainer(cfg: DictConfig, output: Path) -> L.Trainer:
    """The run's Trainer settings (precision resolved as in training) on one device, without logger, checkpoints
    or model summary; a progress bar only on a terminal. Runs older than the speed switches get their defaults."""
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
    return L.Trainer(**options, logger=False, callbacks=[speed], default_root_dir=str(output))


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
    checkpoint: str | Path,
    split: str = "test",
    data: str | None = None,
    data_overrides: Sequence[str] = (),
    output: str | Path | None = None,
    backend: str = "eager",
    calibration_images: int = 256,
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on ``split`` (test or val) of its run's data, or of ``data`` (a configs/data name),
    with ``data_overrides`` (``KEY=VALUE`` of the data node), on ``backend``; write ``config.yaml`` and
    ``metrics.json`` to ``output`` (default :func:`default_output`). Returns what metrics.json holds, plus
    ``output``."""
    started = time.perf_counter()
    if split not in SPLITS:
        raise ConfigError(f"split={split!r}: choose {' or '.join(SPLITS)}")
    check_backend(backend, (*BACKENDS, "auto"))
    checkpoint = Path(checkpoint)
    cfg, task = load_task(checkpoint)
    cfg.data = data_node(cfg.data, data, data_overrides)
    data_name = data or cfg.data.name
    output = (
        Path(output) if output else default_output(run_directory(checkpoint), split, data_name, data_overrides, backend)
    )
    cfg.eval = {"checkpoint": str(checkpoint.resolve()), "split": split, "backend": backend}

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg)
    datamodule.setup(SPLITS[split])
    check_sizes(task, datamodule, f"data={data_name}" if data else f"the run's data node ({data_name})")
    output.mkdir(parents=True, exist_ok=True)
    write_config(output, cfg)
    summary: dict[str, Any] = {
        "checkpoint": cfg.eval.checkpoint,
        "split": split,
        "parameters": count_parameters(task),
    }
    trainer = eval_trainer(cfg, output)
    metrics, seconds = timed_score(trainer, task, datamodule, split)
    summary.update(metrics=metrics, precision=str(trainer.precision), backend="eager", scoring_seconds=seconds)
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
