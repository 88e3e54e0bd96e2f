"""What one job of a sweep needs from the framework: its share of the cores when a parallel launcher runs
several jobs at once (``vr train -m hydra/launcher=local_parallel``), processes of its own that start there too,
the number a sweeper optimizes (``vr train -m hparams_search=mnist_optuna``), and the list of failed jobs at the end
of a sweep that went on after them (``on_error=continue``).

``threads: null`` (configs/train.yaml) is automatic: cores // n_jobs torch threads per job when the job's Hydra
launcher runs ``n_jobs`` > 1 jobs at once (joblib), torch's own default otherwise; the loader workers of such a
job (``data.num_workers``, where not 0) are capped at the same share. An integer sets the threads of every job.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .data.loader import default_num_workers
from .errors import ConfigError, close_matches
from .run_dir import METRICS


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def parallel_jobs(launcher: Mapping[str, Any], cores: int) -> int:
    """How many jobs ``launcher`` (the ``hydra.launcher`` config) runs at once: its ``n_jobs``, where -1 means one
    per core as in joblib; 1 for launchers without it (Hydra's basic launcher, SLURM: a job per allocation)."""
    n_jobs = launcher.get("n_jobs") or 1
    return max(1, cores + 1 + n_jobs if n_jobs < 0 else n_jobs)


def restore_start_method() -> None:
    """Back to the platform's default way of starting processes, in a worker process of joblib's (which makes loky's
    the default): processes that the job starts itself, loader workers and ``ddp_spawn``'s, cannot start with it."""
    if multiprocessing.get_start_method(allow_none=True) == "loky":
        multiprocessing.set_start_method(None, force=True)


def share_cores(cfg: DictConfig) -> int:
    """Set this job's torch threads (and cap its loader workers) from ``cfg.threads``; returns the thread count."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    threads = cfg.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads={threads!r}: expected a positive integer, or null for cores // parallel jobs")
    hydra_cfg, cores = HydraConfig.get(), available_cores()
    jobs = parallel_jobs(hydra_cfg.launcher, cores) if hydra_cfg.mode == RunMode.MULTIRUN else 1
    share = max(1, cores // jobs)
    if threads is None and jobs > 1:
        threads = share
    if threads is not None:
        torch.set_num_threads(threads)
    workers = OmegaConf.select(cfg, "data.num_workers", default=0)
    if jobs > 1 and workers != 0:
        cfg.data.num_workers = min(default_num_workers() if workers is None else workers, share)
    return torch.get_num_threads()


def optimized_value(metrics: Mapping[str, float], name: str | None) -> float | None:
    """The value of the metric ``optimized_metric`` names (a key of metrics.json's ``metrics``), for a sweeper such
    as Optuna's; None when no metric is named."""
    if name is None:
        return None
    if name not in metrics:
        matches = close_matches(name, metrics)
        hint = f"Did you mean: {', '.join(matches)}? " if matches else ""
        known = ", ".join(sorted(metrics))
        raise ConfigError(f"optimized_metric={name!r} is not a metric of this run. {hint}It has: {known}")
    return float(metrics[name])


class SweepReport(Callback):
    """Hydra callback (configs/train.yaml): after a sweep whose failed jobs did not stop it (``on_error=continue``),
    one error line listing the jobs that have no ``metrics.json``, and exit code 2 when there are any."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if config.get("on_error") != "continue":
            return
        jobs = sorted(p.parent for p in Path(config.hydra.sweep.dir).glob("*/*.log"))
        failed = [job for job in jobs if not (job / METRICS).is_file()]
        if failed:
            names = ", ".join(job.name for job in failed)
            print(
                f"error: {len(failed)} of {len(jobs)} jobs of the sweep {config.hydra.sweep.dir} failed ({names}); "
                "each one's cli.log says why",
                file=sys.stderr,
            )
            raise SystemExit(2)
