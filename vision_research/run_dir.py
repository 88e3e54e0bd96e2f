"""The run folder: the one module that knows its layout, and how a trained run is loaded back.

``vr train`` writes one folder per run; ``resume=``, ``vr eval``, ``vr predict``, ``vr export``, ``vr inspect`` and
``vr compare`` read it::

    <run>/config.yaml                 the resolved config (CONFIG)
    <run>/.hydra/overrides.yaml       the command-line overrides: what resume= replays, what vr compare groups by
    <run>/.hydra/config.yaml          Hydra's own copy of the composed config, unresolved (HYDRA_CONFIG)
    <run>/.hydra/hydra.yaml           Hydra's run-time state, with the config-group choices (HYDRA_STATE)
    <run>/run.lock                    held by the one process writing the run; its pid and host inside meanwhile (LOCK)
    <run>/checkpoints/{best,last}.ckpt
    <run>/events.out.tfevents.*       TensorBoard
    <run>/metrics.json                the final figures (METRICS); absent while the run is unfinished
    <run>/metrics.previous.json       a finished run's figures while it is lengthened (PREVIOUS_METRICS)
    <run>/eval/<name>/                vr eval's config.yaml and metrics.json (EVAL)
    <run>/predictions/                vr predict's default output (PREDICTIONS)

A run folder is written by one process (:class:`RunLock`), only after every check that can refuse the command has
passed (configs/train.yaml sets ``hydra.output_subdir: null``; :func:`write_hydra_record` writes ``.hydra/`` then).
Paths inside ``metrics.json`` and the checkpoints are relative to the folder, so a moved run works where it lies.

Nothing here imports torch or Lightning at module level: ``vr train resume=...`` reads the layout before Hydra sets
up logging (importing Lightning first would keep its messages out of the run's log file).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from .errors import ConfigError, DataError, NothingToResume, RunDirectoryInUse

if TYPE_CHECKING:
    from .tasks.base import VisionTask

CONFIG = Path("config.yaml")
METRICS = Path("metrics.json")
PREVIOUS_METRICS = Path("metrics.previous.json")
CHECKPOINTS = Path("checkpoints")
LAST_CHECKPOINT = CHECKPOINTS / "last.ckpt"
OVERRIDES = Path(".hydra") / "overrides.yaml"
HYDRA_CONFIG = Path(".hydra") / "config.yaml"
HYDRA_STATE = Path(".hydra") / "hydra.yaml"
LOCK = Path("run.lock")
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


def check_work_left(run_dir: Path, cfg: DictConfig) -> None:
    """``NothingToResume`` when the run finished (``metrics.json``) under the same ``trainer.max_epochs`` /
    ``max_steps`` / ``max_time`` that ``cfg`` asks for: resuming it would only write its figures again."""
    summary = read_metrics(run_dir)
    if summary is None:
        return
    finished_under = summary.get("limits") or stop_limits(OmegaConf.load(run_dir / CONFIG))
    if finished_under == stop_limits(cfg):
        raise NothingToResume(
            f"resume={run_dir}: the run finished ({summary.get('epochs')} epochs, {METRICS}) and nothing asks for "
            "more: give a larger trainer.max_epochs (or max_steps) to train it longer, or test it with vr eval"
        )


def stop_limits(cfg: DictConfig) -> dict[str, Any]:
    """Where a run stops: its ``trainer.max_epochs``, ``max_steps`` and ``max_time`` (``limits`` in metrics.json)."""
    return {
        key: OmegaConf.select(cfg, f"trainer.{key}", default=None) for key in ("max_epochs", "max_steps", "max_time")
    }


def check_run_to_resume(run_dir: Path) -> None:
    """``run_dir`` is a folder ``vr train`` wrote, not being written now: it holds ``config.yaml`` and
    ``.hydra/overrides.yaml``, and no other process holds its lock."""
    if not run_dir.is_dir():
        raise ConfigError(f"resume={run_dir}: no such run directory")
    RunLock(run_dir).check_free()  # a run still starting has no record yet: it is named as in progress
    if not (run_dir / OVERRIDES).is_file() or not (run_dir / CONFIG).is_file():
        raise ConfigError(f"resume={run_dir}: not a run directory of vr train (it lacks {CONFIG} or {OVERRIDES})")


class RunLock:
    """The exclusive right to write a run folder, held for the run's life: an OS lock on ``<run>/run.lock``
    (``filelock``; the system drops it when the holder dies, even by kill -9), with the holder's pid, host and start
    time written inside while held. A second process is refused with ``RunDirectoryInUse`` naming the holder."""

    def __init__(self, run_dir: Path) -> None:
        from filelock import FileLock

        self.run_dir = run_dir
        self.path = run_dir / LOCK
        self._lock = FileLock(self.path, timeout=0)

    def check_free(self) -> None:
        """``RunDirectoryInUse`` naming the holder if another process holds the lock; writes nothing."""
        if self.path.is_file():
            self._acquire()
            self._lock.release()

    def _acquire(self) -> None:
        from filelock import Timeout

        try:
            self._lock.acquire()
        except Timeout:
            holder = self.path.read_text().strip() if self.path.is_file() else ""
            raise RunDirectoryInUse(
                f"run directory {self.run_dir} is being written by another process ({holder or 'holder unknown'}); "
                "wait for it to end, or choose another hydra.run.dir"
            ) from None

    def __enter__(self) -> RunLock:
        self._acquire()
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        self.path.write_text(f"vr train, pid {os.getpid()} on host {socket.gethostname()}, since {started}\n")
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.path.write_text("")
        self._lock.release()


def write_hydra_record(run_dir: Path, cfg: DictConfig) -> None:
    """``<run>/.hydra/``: the composed config, Hydra's run-time state and the command line's overrides, as Hydra
    would have written them before the job (nothing outside a Hydra app)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    state = HydraConfig.instance().cfg
    (run_dir / HYDRA_STATE).parent.mkdir(exist_ok=True)
    (run_dir / HYDRA_CONFIG).write_text(OmegaConf.to_yaml(cfg))
    (run_dir / HYDRA_STATE).write_text(OmegaConf.to_yaml(state))
    (run_dir / OVERRIDES).write_text(OmegaConf.to_yaml(state.hydra.overrides.task))


def relative_path(path: str | Path | None, run_dir: Path) -> str | None:
    """``path`` relative to the run folder (as ``metrics.json`` names files), None for None."""
    return None if path is None else os.path.relpath(Path(path).resolve(), run_dir.resolve())


def read_metrics(folder: Path, name: Path = METRICS) -> dict[str, Any] | None:
    """``folder/metrics.json`` (or ``name``; None when there is none); an unreadable file is a one-line error."""
    path = folder / name
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise DataError(f"{path}: not a metrics file of vr ({err})") from None


def merge_summaries(previous: dict[str, Any] | None, current: dict[str, Any]) -> dict[str, Any]:
    """A lengthened run's summary over the one it finished with before: the new figures replace the old, those the new
    stretch did not measure are kept (but not old test figures of weights it trained further without testing), and
    the seconds add up."""
    if previous is None:
        return current
    trained = current["global_step"] != previous.get("global_step")
    kept = {
        name: value
        for name, value in previous.get("metrics", {}).items()
        if not (trained and current["tested_checkpoint"] is None and name.startswith("test/"))
    }
    merged = {**previous, **{key: value for key, value in current.items() if value is not None}}
    merged["metrics"] = {**kept, **current["metrics"]}
    merged["seconds"] = round(previous.get("seconds", 0.0) + current["seconds"], 2)
    return merged


def start_record(run_dir: Path, cfg: DictConfig) -> dict[str, Any] | None:
    """Once every check of the run has passed: write ``config.yaml`` and ``.hydra/``, and set a lengthened run's
    ``metrics.json`` aside (``metrics.previous.json``: the run reads as unfinished until it is). Returns the figures
    set aside, now or by a lengthened run that was stopped (None: none)."""
    write_config(run_dir, cfg)
    write_hydra_record(run_dir, cfg)
    if (run_dir / METRICS).is_file():
        os.replace(run_dir / METRICS, run_dir / PREVIOUS_METRICS)
    return read_metrics(run_dir, PREVIOUS_METRICS)


def finish_record(run_dir: Path, summary: dict[str, Any]) -> None:
    """The run's ``metrics.json`` (a lengthened run's merged with what :func:`start_record` set aside, which goes)."""
    write_metrics(run_dir, summary)
    (run_dir / PREVIOUS_METRICS).unlink(missing_ok=True)


def write_config(folder: Path, cfg: DictConfig) -> None:
    """``folder/config.yaml``: ``cfg`` resolved."""
    (folder / CONFIG).write_text(OmegaConf.to_yaml(cfg, resolve=True))


def write_metrics(folder: Path, summary: dict[str, Any]) -> None:
    """``folder/metrics.json``: a run's (or an evaluation's) final figures."""
    (folder / METRICS).write_text(json.dumps(summary, indent=2))
