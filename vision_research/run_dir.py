"""The run folder: the one module that knows its layout, and how a trained run is loaded back.

``vr train`` writes one folder per run; ``resume=``, ``vr eval``, ``vr predict``, ``vr export``, ``vr inspect`` and
``vr compare`` read it::

    <run>/config.yaml                 the resolved config (CONFIG)
    <run>/.hydra/overrides.yaml       the command-line overrides: what resume= replays, what vr compare groups by
    <run>/.hydra/config.yaml          Hydra's own copy of the composed config, unresolved (HYDRA_CONFIG)
    <run>/.hydra/hydra.yaml           Hydra's run-time state, with the config-group choices (HYDRA_STATE)
    <run>/checkpoints/{best,last}.ckpt
    <run>/events.out.tfevents.*       TensorBoard
    <run>/metrics.json                the final figures (METRICS); absent while the run is unfinished
    <run>/eval/<name>/                vr eval's config.yaml and metrics.json (EVAL)
    <run>/predictions/                vr predict's default output (PREDICTIONS)

Nothing here imports torch or Lightning at module level: ``vr train resume=...`` reads the layout before Hydra sets
up logging (importing Lightning first would keep its messages out of the run's log file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from .errors import ConfigError, DataError, RunDirectoryInUse

if TYPE_CHECKING:
    from .tasks.base import VisionTask

CONFIG = Path("config.yaml")
METRICS = Path("metrics.json")
CHECKPOINTS = Path("checkpoints")
LAST_CHECKPOINT = CHECKPOINTS / "last.ckpt"
OVERRIDES = Path(".hydra") / "overrides.yaml"
HYDRA_CONFIG = Path(".hydra") / "config.yaml"
HYDRA_STATE = Path(".hydra") / "hydra.yaml"
EVAL = Path("eval")
PREDICTIONS = Path("predictions")


def run_directory(checkpoint: Path) -> Path:
    """The run directory of ``checkpoint``: the folder holding ``config.yaml``, above ``checkpoints/`` or beside it."""
    for folder in (checkpoint.parent.parent, checkpoint.parent):
        if (folder / CONFIG).is_file():
            return folder
    raise DataError(
        f"{checkpoint}: no {CONFIG} in its run directory; the checkpoint must stay in the run it was trained in "
        f"(<run>/{CHECKPOINTS}/)"
    )


def run_config(checkpoint: Path) -> DictConfig:
    """The resolved config saved in the checkpoint's run directory."""
    return OmegaConf.load(run_directory(checkpoint) / CONFIG)


def load_task(checkpoint: str | Path, device: str = "cpu") -> tuple[DictConfig, VisionTask]:
    """The run config of ``checkpoint`` and its task with the saved weights (the run's ``imports`` imported first).

    The file is loaded with ``weights_only=True`` (no pickled code runs). A missing file, a run without config.yaml, an
    unknown ``task.name``, a file holding a pickled type that is not allowed and a file that is not a checkpoint of
    that task raise one-line ``DataError`` / ``ConfigError`` naming the file.
    """
    from .build import import_user_modules
    from .checkpoints import LOAD_ERRORS, load_error
    from .tasks import TASKS

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise DataError(f"{checkpoint}: checkpoint not found")
    cfg = run_config(checkpoint)
    import_user_modules(list(cfg.get("imports") or []))
    try:
        task_class = TASKS.get(cfg.task.name)
    except ConfigError as err:
        raise ConfigError(f"{run_directory(checkpoint) / CONFIG}: task.name: {err}") from None
    try:
        task = task_class.load_from_checkpoint(checkpoint, map_location=device, weights_only=True)
    except LOAD_ERRORS as err:
        raise load_error(checkpoint, err, f"truncated, corrupt or not a checkpoint of a {cfg.task.name} task") from None
    return cfg, task


def run_input_size(cfg: DictConfig, task: VisionTask, default: int = 224) -> int:
    """The side of a run's square input: the task's own ``image_size`` (a detector's), else its data node's
    ``image_size`` / ``scene_size``, else ``default``."""
    data = cfg.data
    return int(task.hparams.get("image_size") or data.get("image_size") or data.get("scene_size") or default)


def last_checkpoint(run_dir: Path) -> Path | None:
    """The run's ``checkpoints/last.ckpt`` (None when it was killed before its first epoch ended)."""
    path = run_dir / LAST_CHECKPOINT
    return path if path.is_file() else None


def checkpoint_step(path: Path) -> int:
    """The global step a Lightning checkpoint was saved at; an unreadable file or another kind of file is a
    one-line ``DataError`` naming it."""
    from .checkpoints import safe_load

    checkpoint = safe_load(path)
    if not isinstance(checkpoint, dict) or "global_step" not in checkpoint:
        raise DataError(f"{path}: not a Lightning checkpoint (it has no global_step); cannot resume from it")
    return int(checkpoint["global_step"])


def check_fresh_run_dir(run_dir: Path) -> None:
    """Refuse a run directory that holds a previous run's checkpoints, ``metrics.json`` or TensorBoard events (what
    Hydra writes before the run — ``.hydra/``, its log — and a ``config.yaml`` are no results)."""
    results = sorted(
        p.relative_to(run_dir).as_posix()
        for p in [run_dir / METRICS, *(run_dir / CHECKPOINTS).glob("*"), *run_dir.glob("events.out.tfevents.*")]
        if p.is_file()
    )
    if results:
        shown = ", ".join(results[:3]) + (", ..." if len(results) > 3 else "")
        raise RunDirectoryInUse(
            f"run directory {run_dir} already holds a previous run ({shown}); choose another hydra.run.dir "
            "(or delete that run)"
        )


def check_run_to_resume(run_dir: Path) -> None:
    """``run_dir`` is a folder ``vr train`` wrote: it holds ``config.yaml`` and ``.hydra/overrides.yaml``."""
    if not run_dir.is_dir():
        raise ConfigError(f"resume={run_dir}: no such run directory")
    if not (run_dir / OVERRIDES).is_file() or not (run_dir / CONFIG).is_file():
        raise ConfigError(f"resume={run_dir}: not a run directory of vr train (it lacks {CONFIG} or {OVERRIDES})")


def write_config(folder: Path, cfg: DictConfig) -> None:
    """``folder/config.yaml``: ``cfg`` resolved."""
    (folder / CONFIG).write_text(OmegaConf.to_yaml(cfg, resolve=True))


def write_metrics(folder: Path, summary: dict[str, Any]) -> None:
    """``folder/metrics.json``: a run's (or an evaluation's) final figures."""
    (folder / METRICS).write_text(json.dumps(summary, indent=2))
