"""One training run from a composed config: datamodule → task → Lightning Trainer → run directory.

The run directory receives ``config.yaml`` (the resolved config), the TensorBoard events (scalars, and
hparams with the final metrics), ``checkpoints/best.ckpt`` and ``metrics.json``.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateMonitor,
    RichProgressBar,
    TQDMProgressBar,
)
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher  # Lightning's re-running DDP launcher
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig

from .build import build_datamodule, build_task, import_user_modules, plain, trainer_options
from .callbacks import (
    BackboneFreeze,
    DivergenceGuard,
    FeatureCache,
    RandomStateCheckpoint,
    RunCheckpoint,
    StopOnSignal,
    TrainingThroughput,
    WarmupEMA,
)
from .checkpoints import AtomicCheckpointIO
from .errors import ConfigError, RunInterrupted, check_choice
from .models import count_parameters
from .paths import check_can_create
from .resume import check_resume_config
from .run_dir import (
    CHECKPOINTS,
    LAST_CHECKPOINT,
    RunLock,
    check_fresh_run_dir,
    check_work_left,
    checkpoint_step,
    finish_record,
    last_checkpoint,
    merge_summaries,
    relative_path,
    start_record,
    stop_limits,
)
from .speed import speed_options


def build_callbacks(cfg: DictConfig, task: L.LightningModule, run_dir: Path) -> list[Callback]:
    """Checkpoints (best and last, with the random generators' state), optional early stopping and weight EMA, LR
    monitor, progress bar, the speed options (channels-last, compile), throughput, and the stop at a non-finite loss
    (``cfg.divergence``)."""
    callbacks_cfg = cfg.callbacks
    monitor = callbacks_cfg.checkpoint.monitor or task.monitor
    callbacks: list[Callback] = [
        RunCheckpoint(
            dirpath=run_dir / CHECKPOINTS,
            filename="best",
            monitor=monitor,
            mode=task.monitor_mode,
            save_top_k=1,
            auto_insert_metric_name=False,
            enable_version_counter=False,  # a run directory holds one run: best.ckpt is always this run's
        ),
        # Lightning's save_last only copies a checkpoint when the monitored one improves; an unmonitored
        # callback keeps the weights of the latest epoch.
        RunCheckpoint(
            dirpath=run_dir / CHECKPOINTS, filename="last", monitor=None, save_top_k=1, enable_version_counter=False
        ),
        RandomStateCheckpoint(),
    ]
    if callbacks_cfg.early_stopping.patience is not None:
        callbacks.append(
            EarlyStopping(monitor=monitor, mode=task.monitor_mode, patience=callbacks_cfg.early_stopping.patience)
        )
    if callbacks_cfg.ema_decay is not None:
        callbacks.append(WarmupEMA(callbacks_cfg.ema_decay))
    finetune = plain(callbacks_cfg.finetune)
    if finetune.pop("cache_features", False):
        epochs = cfg.trainer.get("max_epochs")
        if 0 < finetune["freeze_epochs"] < (epochs or 0) or finetune["unfreeze_from"] is not None:
            raise ConfigError(
                "callbacks.finetune.cache_features keeps the backbone frozen for the whole run, but freeze_epochs="
                f"{finetune['freeze_epochs']} (trainer.max_epochs={epochs}) / unfreeze_from="
                f"{finetune['unfreeze_from']} ask to unfreeze it: drop one of them"
            )
        callbacks.append(FeatureCache())
    elif finetune["freeze_epochs"] > 0:
        check_backbone_trains(finetune, cfg.trainer.get("max_epochs"), task)
        callbacks.append(BackboneFreeze(**finetune))
    if callbacks_cfg.lr_monitor and cfg.logger.tensorboard:
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    bars = {"rich": RichProgressBar, "tqdm": TQDMProgressBar}
    if callbacks_cfg.progress_bar not in (*bars, "none"):
        raise ConfigError(f"callbacks.progress_bar={callbacks_cfg.progress_bar!r}: choose rich, tqdm or none")
    if callbacks_cfg.progress_bar in bars:
        callbacks.append(bars[callbacks_cfg.progress_bar]())
    callbacks.append(speed_options(plain(cfg.speed)))
    callbacks.append(TrainingThroughput())
    callbacks.append(DivergenceGuard(cfg.divergence.max_skipped_steps))
    return callbacks


def check_backbone_trains(finetune: dict[str, Any], epochs: int | None, task: L.LightningModule) -> None:
    """Refuse a backbone that would stay frozen at its random initialisation for the whole run (``freeze_epochs`` ≥
    ``max_epochs`` without pretrained weights): only the head would learn, on random features."""
    bounded = epochs is not None and epochs != -1  # -1: no limit
    frozen_throughout = bounded and finetune["freeze_epochs"] >= epochs and finetune["unfreeze_from"] is None
    if frozen_throughout and not task.hparams.get("pretrained"):
        raise ConfigError(
            f"callbacks.finetune.freeze_epochs={finetune['freeze_epochs']} ≥ trainer.max_epochs={epochs} keeps the "
            "backbone frozen for the whole run, and it has no pretrained weights (model.pretrained): only the head "
            "would learn, on random features; give pretrained weights, or a freeze_epochs below max_epochs"
        )


def check_callbacks(callbacks: list[Callback], task: L.LightningModule, datamodule: L.LightningDataModule) -> None:
    """The callbacks' own checks of the task and data (``check``), before the logger writes anything in the run."""
    for callback in callbacks:
        if hasattr(callback, "check"):
            callback.check(task, datamodule)


def close_process_group() -> None:
    """Every rank leaves together and closes the DDP group, if there is one. Lightning leaves the group open after
    ``fit``, ``validate`` and ``test`` and closes it at interpreter exit without waiting for the other ranks; a
    process exiting with gloo's worker threads still running can abort ("terminate called without an active
    exception") after its work is done."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def _hydra_sweep() -> bool:
    """Whether this run is one job of a Hydra sweep (``vr train -m``)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def check_distributed(trainer: L.Trainer, options: dict[str, Any]) -> None:
    """Refuse, before any process starts, what cannot work: a sweep job that Lightning would start again per process
    (its launcher re-runs the command line, which holds the whole sweep), and SyncBatchNorm on CPU processes."""
    if isinstance(trainer.strategy.launcher, _SubprocessScriptLauncher) and _hydra_sweep():
        raise ConfigError(
            f"{trainer.world_size} processes with trainer.strategy={options.get('strategy', 'auto')} re-run the "
            "command line once per process, which a sweep (-m) cannot do; use trainer.strategy=ddp_spawn for "
            "sweeps, or run the jobs one by one"
        )
    if options.get("sync_batchnorm") and trainer.world_size > 1 and trainer.strategy.root_device.type == "cpu":
        raise ConfigError(
            "trainer.sync_batchnorm=true needs GPUs: torch's SyncBatchNorm runs on CUDA only. "
            "Set trainer.sync_batchnorm=false for processes on the CPU"
        )


def _checkpoint_to_test(which: str, best: RunCheckpoint, latest: RunCheckpoint) -> str | None:
    """The path of the ``best`` or ``last`` checkpoint (None: the weights in memory, if none was saved)."""
    check_choice("test_checkpoint", which, ("best", "last"))
    return (best.best_model_path if which == "best" else latest.best_model_path) or None


def check_run_dir(run_dir: Path, cfg: DictConfig) -> None:
    """Every check that can refuse the run for its folder: empty of results for a new run; for ``cfg.resume`` the
    same config, and something left to do."""
    if cfg.get("resume") is None:
        check_fresh_run_dir(run_dir)
        return
    if Path(cfg.resume).expanduser().resolve() != run_dir.resolve():
        raise ConfigError(f"resume={cfg.resume} continues that run in its own directory, not in {run_dir}")
    check_resume_config(run_dir, cfg)
    check_work_left(run_dir, cfg)


@contextmanager
def own_run_dir(run_dir: Path, cfg: DictConfig) -> Iterator[Path | None]:
    """Check ``run_dir`` (before anything is written there), make it and hold its lock for the run's life (the run
    writes its record once its own checks have passed: ``run_dir.start_record``). Yields the checkpoint to resume
    from (None: start from scratch)."""
    check_can_create(run_dir, "hydra.run.dir")
    resuming = cfg.get("resume") is not None
    # With DDP every process runs this on the same run directory; rank 0 checks, locks and writes (Lightning reads
    # the rank from the launcher's environment: LOCAL_RANK, RANK or SLURM_PROCID; the other ranks join rank 0's
    # run). They make the read-only checks of a resume too, so that every rank ends where rank 0 does.
    if rank_zero_only.rank != 0:
        if resuming:
            check_run_dir(run_dir, cfg)
        yield last_checkpoint(run_dir) if resuming else None
        return
    lock = RunLock(run_dir)
    lock.check_free()  # a run in progress is named as such, not as a previous run
    check_run_dir(run_dir, cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    with lock:
        check_run_dir(run_dir, cfg)  # again, now that no other process can write it
        yield last_checkpoint(run_dir) if resuming else None


def tensorboard_logger(run_dir: Path, resume_step: int | None) -> TensorBoardLogger:
    """The run's TensorBoard logger. A run resumed at ``resume_step`` hides what the killed one logged from that
    step on (TensorBoard's ``purge_step``; an epoch's last figures are logged at the step before), so that the
    curves continue without doubled stretches."""
    purge = {} if resume_step is None else {"purge_step": resume_step}
    return TensorBoardLogger(save_dir=str(run_dir), name="", version="", default_hp_metric=False, **purge)


def train(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Fit (or continue ``cfg.resume``'s fit), test the last or best checkpoint, and write the run directory; returns
    the final metrics. SIGTERM / SIGINT stop it with ``RunInterrupted`` (its last checkpoint kept for ``resume=``)."""
    run_dir = Path(run_dir)
    started = time.perf_counter()
    with own_run_dir(run_dir, cfg) as resume_from, StopOnSignal() as stop:
        try:
            summary, previous = _fit_and_test(cfg, run_dir, resume_from, stop)
        except (RunInterrupted, SIGTERMException):
            raise interrupted(run_dir, stop.received or signal.SIGTERM) from None
        summary["seconds"] = round(time.perf_counter() - started, 2)
        summary = merge_summaries(previous, summary)
        if rank_zero_only.rank == 0:
            finish_record(run_dir, summary)
    close_process_group()
    return summary


def interrupted(run_dir: Path, signum: int) -> RunInterrupted:
    """The one-line account of a run stopped by ``signum``: what is kept and how to continue."""
    latest = last_checkpoint(run_dir)
    kept = (
        f"{LAST_CHECKPOINT} (the end of epoch {checkpoint_epoch(latest)}) is kept"
        if latest
        else "no epoch had ended, so no checkpoint is kept"
    )
    return RunInterrupted(
        f"run {run_dir} stopped by {signal.Signals(signum).name}; {kept}: vr train resume={run_dir} continues it",
        signum,
    )


def checkpoint_epoch(path: Path) -> int:
    """The epoch (counted from 1) whose end ``path`` was saved at."""
    from .checkpoints import safe_load

    return int(safe_load(path)["epoch"]) + 1


def _fit_and_test(
    cfg: DictConfig, run_dir: Path, resume_from: Path | None, stop: StopOnSignal
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The run's summary, and the figures of the stretch a lengthened run finished before (None: none)."""
    import_user_modules(list(cfg.imports))
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    task = build_task(cfg, datamodule)
    callbacks = [*build_callbacks(cfg, task, run_dir), stop]
    check_callbacks(callbacks, task, datamodule)
    # The step the resumed run starts from (0: a run killed before its first checkpoint starts again).
    resume_step = checkpoint_step(resume_from) if resume_from else (0 if cfg.get("resume") is not None else None)
    previous = start_record(run_dir, cfg) if rank_zero_only.rank == 0 else None  # every check has passed
    logger = tensorboard_logger(run_dir, resume_step) if cfg.logger.tensorboard else False
    options = {"enable_progress_bar": cfg.callbacks.progress_bar != "none", **trainer_options(cfg)}
    trainer = L.Trainer(
        **options,
        logger=logger,
        callbacks=callbacks,
        default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO()],
    )
    check_distributed(trainer, options)
    trainer.fit(task, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)

    checkpoint, latest = (c for c in callbacks if isinstance(c, RunCheckpoint))
    (throughput,) = (c for c in callbacks if isinstance(c, TrainingThroughput))
    metrics: dict[str, Any] = {
        k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("train/", "val/"))
    }
    if checkpoint.best_model_score is not None:
        metrics[f"best/{checkpoint.monitor}"] = float(checkpoint.best_model_score)
    tested = None
    if cfg.test_after_fit and trainer.state.status.value == "finished":
        tested = _checkpoint_to_test(cfg.test_checkpoint, checkpoint, latest)
        for results in trainer.test(task, datamodule=datamodule, ckpt_path=tested, verbose=False, weights_only=True):
            metrics.update({k: float(v) for k, v in results.items()})
    summary = {
        "metrics": metrics,
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "limits": stop_limits(cfg),
        "parameters": count_parameters(task),
        "gflops": throughput.gflops,
        "train_images_per_second": throughput.images_per_second,
        "precision": str(trainer.precision),
        "processes": trainer.world_size,
        "threads": torch.get_num_threads(),
        # Paths relative to the run folder: a moved run still names its own files.
        "best_checkpoint": relative_path(checkpoint.best_model_path or None, run_dir),
        "resumed_from": relative_path(resume_from, run_dir),
        "tested_checkpoint": relative_path(tested, run_dir),
    }
    if logger:
        hp_metrics = {"hp/" + k.replace("/", "_"): v for k, v in metrics.items() if k.startswith(("best/", "test/"))}
        logger.log_hyperparams(plain(cfg), metrics=hp_metrics)
        logger.finalize("success")
    return summary, previous
