"""Sweeps on Hydra's plugins: jobs in parallel processes that share the cores (joblib), SLURM jobs (submitit,
composed only: there is no cluster here), Optuna's search, and the mistakes each of them can meet."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from vision_research.cli.overrides import check_launch, validate_overrides
from vision_research.config_tree import config_dir
from vision_research.errors import ConfigError
from vision_research.sweeps import available_cores, optimized_value, restore_start_method, share_cores

# scikit-learn's digits load in a fraction of a second, the embedded MNIST in seconds (in every job).
FAST = ["data=digits", "debug=fast", "callbacks.progress_bar=none", "logger.tensorboard=false"]


def vr_train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "vision_research.cli", "train", *args, *FAST]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def sweep_runs(root: Path) -> list[Path]:
    return sorted(p.parent for p in (root / "runs" / "sweeps").glob("*/*/metrics.json"))


def compose_with_hydra(*overrides: str):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


@pytest.fixture
def hydra_job():
    """Make a composed config the current Hydra job's (as in a job of `vr train`), then undo it and the threads."""
    threads = torch.get_num_threads()

    def enter(*overrides: str):
        cfg = compose_with_hydra(*overrides)
        HydraConfig.instance().set_config(cfg)
        return cfg

    yield enter
    HydraConfig.instance().cfg = None
    torch.set_num_threads(threads)


@pytest.mark.slow  # 30 s: an Optuna study of four trials in parallel processes
def test_an_optuna_search_on_the_parallel_launcher_runs_two_trials_at_once_and_reports_the_best(tmp_path):
    # One sweep for both plugins, to keep the test time small: Optuna asks for 2 trials at a time, joblib runs them
    # in 2 processes, each returns its best/val/acc1 to the sweeper. Loader workers (null: one per core, up to 4)
    # must start inside joblib's worker processes, capped at the job's share of the cores.
    search = ["hparams_search=mnist_optuna", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2"]
    done = vr_train("-m", *search, "hydra/launcher=local_parallel", "data.num_workers=null", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = sweep_runs(tmp_path)
    summaries = [json.loads((run / "metrics.json").read_text()) for run in runs]
    configs = [yaml.safe_load((run / "config.yaml").read_text()) for run in runs]
    assert len(runs) == 4 and done.stdout.count("run: ") == 4  # a run directory and a summary line per trial
    share = max(1, available_cores() // 2)  # (joblib's loky also caps the OpenMP threads of its workers at this)
    assert all(summary["threads"] == share for summary in summaries)
    assert all(config["data"]["num_workers"] == min(4, share) for config in configs)
    # config.yaml is written when a job starts training, metrics.json when it ends: two jobs overlapped in time.
    spans = [((run / "config.yaml").stat().st_mtime, (run / "metrics.json").stat().st_mtime) for run in runs]
    assert any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1 :])

    values = [summary["metrics"]["best/val/acc1"] for summary in summaries]
    (results,) = (tmp_path / "runs" / "sweeps").glob("*/optimization_results.yaml")
    best = yaml.safe_load(results.read_text())
    assert best["best_value"] == pytest.approx(max(values), abs=1e-12)
    best_config = configs[values.index(max(values))]
    assert best["best_params"]["data.batch_size"] == best_config["data"]["batch_size"]
    assert best["best_params"]["task.optimizer.lr"] == pytest.approx(best_config["task"]["optimizer"]["lr"])
    rates = {config["task"]["optimizer"]["lr"] for config in configs}
    assert len(rates) == 4 and all(1e-4 <= lr <= 3e-2 for lr in rates)  # sampled from the search space


def test_a_failing_job_of_a_parallel_sweep_ends_in_one_line_naming_the_metrics(tmp_path):
    done = vr_train("-m", "hydra/launcher=local_parallel", "optimized_metric=val/acc9", "seed=1,2", cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors and "Traceback" not in done.stderr  # one line per job that failed before joblib stopped the rest
    for line in errors:
        assert re.match(
            r"error: job \d \(\S+/sweeps/\S+/\d_\S+,seed=\d\): optimized_metric='val/acc9' is not a metric", line
        )
        assert "Did you mean: " in line and "It has: best/val/acc1, test/acc1, test/acc5, test/loss," in line


@pytest.mark.parametrize("on_error", ["stop", "continue"])
def test_a_failed_job_is_named_and_with_on_error_continue_the_others_run(tmp_path, on_error):
    done = vr_train("-m", "task.optimizer.lr=1e6,0.01", f"on_error={on_error}", cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    sweep = next((tmp_path / "runs" / "sweeps").iterdir())
    jobs = {path.name.split("_", 1)[0]: path for path in sweep.iterdir() if path.is_dir()}
    failed = f"error: job 0 ({jobs['0']}): training diverged at "
    assert errors[0].startswith(failed) and "Traceback" not in done.stderr
    finished = [path.parent for path in sweep.glob("*/metrics.json")]
    if on_error == "continue":
        assert finished == [jobs["1"]] and "lr=0.01" in jobs["1"].name
        assert errors[1:] == [
            f"error: 1 of 2 jobs of the sweep {sweep.relative_to(tmp_path)} failed ({jobs['0'].name}); "
            "each one's cli.log says why"
        ]
        assert failed.removeprefix("error: ") in (jobs["0"] / "cli.log").read_text()
    else:
        assert finished == [] and len(errors) == 1 and list(jobs) == ["0"]


def test_local_parallel_is_joblib_running_two_jobs_at_once():
    launcher = compose_with_hydra("hydra/launcher=local_parallel").hydra.launcher
    assert launcher._target_.endswith("JoblibLauncher") and launcher.n_jobs == 2


def test_the_slurm_launcher_composes_with_the_values_asked_for():
    cfg = compose_with_hydra(
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.nodes=2",
        "hydra.launcher.tasks_per_node=4",
        "hydra.launcher.gpus_per_node=4",
        "trainer=ddp",
        "trainer.devices=4",
        "trainer.num_nodes=2",
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == ("gpu", 2, 4, 4)
    assert (launcher.timeout_min, launcher.mem_gb, launcher.cpus_per_task) == (240, 32, 8)  # configs/hydra/launcher
    assert launcher.submitit_folder.startswith(cfg.hydra.sweep.dir)
    assert (cfg.trainer.devices, cfg.trainer.num_nodes) == (launcher.tasks_per_node, launcher.nodes)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["hydra/launcher=local_parallel"], max(1, available_cores() // 2)),  # 2 jobs at once
        (["hydra/launcher=local_parallel", "hydra.launcher.n_jobs=-1"], 1),  # joblib's -1: a job per core
        (["hydra/launcher=local_parallel", "threads=3"], 3),  # asked for
        ([], None),  # Hydra's basic launcher runs one job at a time: torch's default stays
    ],
)
def test_each_job_of_a_sweep_takes_its_share_of_the_cores(hydra_job, overrides, expected):
    default = torch.get_num_threads()
    cfg = hydra_job("hydra.mode=MULTIRUN", *overrides)
    assert share_cores(cfg) == torch.get_num_threads() == (expected or default)


def test_a_single_run_on_the_parallel_launcher_keeps_the_threads_it_has(hydra_job):
    torch.set_num_threads(3)  # not what a share of the cores would be on any machine with fewer than 6 cores
    cfg = hydra_job("hydra.mode=RUN", "hydra/launcher=local_parallel")
    assert share_cores(cfg) == torch.get_num_threads() == 3  # nothing runs beside it


@pytest.mark.parametrize(("workers", "expected"), [("null", min(4, max(1, available_cores() // 2))), ("0", 0)])
def test_loader_workers_of_parallel_jobs_are_capped_at_their_share(hydra_job, workers, expected):
    loader = f"data.num_workers={workers}"
    cfg = hydra_job("hydra.mode=MULTIRUN", "hydra/launcher=local_parallel", "data=shapes", loader)
    share_cores(cfg)
    assert cfg.data.num_workers == expected


@pytest.mark.parametrize("value", ["0", "-2", "abc", "true"])
def test_threads_must_be_a_positive_integer(hydra_job, value):
    cfg = hydra_job("hydra.mode=MULTIRUN", f"threads={value}")
    with pytest.raises(ConfigError, match=r"^threads=.*expected a positive integer"):
        share_cores(cfg)


def test_a_job_in_a_joblib_worker_starts_processes_the_platform_s_way():
    from joblib.externals.loky.backend import context  # noqa: F401  (registers the "loky" start method)

    default = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method("loky", force=True)  # what joblib's worker processes run with
    try:
        restore_start_method()
        assert multiprocessing.get_start_method(allow_none=True) is None  # the platform's default from now on
    finally:
        multiprocessing.set_start_method(default, force=True)


def test_optimized_metric_names_a_metric_of_the_run():
    metrics = {"val/acc1": 0.5, "best/val/acc1": 0.75, "test/acc1": 0.625}
    assert optimized_value(metrics, "best/val/acc1") == 0.75 and optimized_value(metrics, None) is None
    with pytest.raises(ConfigError) as caught:
        optimized_value(metrics, "val/acc")
    assert str(caught.value) == (
        "optimized_metric='val/acc' is not a metric of this run. Did you mean: val/acc1, best/val/acc1, test/acc1? "
        "It has: best/val/acc1, test/acc1, val/acc1"
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["hydra/launcher=jobllib"], "unknown hydra/launcher 'jobllib'. Did you mean: joblib?"),
        (["hydra/sweeper=optunaa"], "unknown hydra/sweeper 'optunaa'. Did you mean: optuna?"),
        (["hparams_search=mnist_optun"], "unknown hparams_search 'mnist_optun' (configs/hparams_search/)"),
        (["data.batch_size=interval(16,64)"], "data.batch_size=16.0: expected an integer"),
    ],
)
def test_sweep_option_mistakes_are_named(overrides, message):
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        validate_overrides(overrides)


def test_without_the_plugins_their_options_say_how_to_install_them(tmp_path):
    # A regular package named hydra_plugins first on the path hides the installed plugins (a namespace package),
    # as after `pip install -e .` without the cluster extra.
    (tmp_path / "hydra_plugins").mkdir()
    (tmp_path / "hydra_plugins" / "__init__.py").touch()
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    command = [sys.executable, "-m", "vision_research.cli", "train", "-m", "hydra/launcher=local_parallel", "seed=1,2"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: hydra/launcher 'joblib' is not installed "
        "(Hydra's joblib, submitit and optuna plugins install with pip install -e '.[cluster]')"
    )


def test_search_space_overrides_are_checked_at_both_ends():
    validate_overrides(["hparams_search=mnist_optuna", "task.optimizer.lr=tag(log, interval(1e-4, 1e-2))"])
    with pytest.raises(ConfigError, match="unknown config key 'task.optimizer.learning_rate'"):
        validate_overrides(["hparams_search=mnist_optuna", "task.optimizer.learning_rate=interval(1e-4, 1e-2)"])


def test_processes_started_by_torchrun_or_srun_need_one_sweep_directory(hydra_job, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    hydra_job("hydra.mode=MULTIRUN")
    with pytest.raises(ConfigError, match="add hydra.sweep.dir=runs/<name>"):
        check_launch()
    hydra_job("hydra.mode=MULTIRUN", "hydra.sweep.dir=runs/shared")
    check_launch()
    # The tasks of one submitit job (hydra/launcher=slurm) share the job's directory by construction.
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    hydra_job("hydra.mode=MULTIRUN")
    check_launch()
