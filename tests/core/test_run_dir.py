"""A run folder is written by one process and never changed by a command it refuses: the checks run before Hydra or
the run write anything, a lock keeps a second process out, resuming a finished run asks for more work, a moved run
uses its own files, and a signal ends the run with a checkpoint that ``resume=`` continues."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from tests.commands import vr
from tests.core.test_resume import crash_at
from tests.core.test_training_faults import fast_config
from vision_research.callbacks import RunCheckpoint
from vision_research.errors import DataError, NothingToResume, RunDirectoryInUse
from vision_research.run_dir import RunLock, merge_summaries
from vision_research.train import train

FAST = ["debug=fast", "callbacks.progress_bar=none"]
# The default run's figures that a stopped and resumed run must reproduce.
FIGURES = ("test/acc1", "test/loss", "best/val/acc1", "val/loss", "train/loss")


def folder_digest(folder: Path) -> str:
    """One hash of every file's path and bytes under ``folder``: any file changed, added or removed changes it."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished run of ``vr train`` (its .hydra/ included), made once for the refusals below."""
    root = tmp_path_factory.mktemp("runs")
    result = vr("train", *FAST, "hydra.run.dir=runs/a", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "runs" / "a"


@pytest.mark.parametrize(
    ("args", "code", "line"),
    [
        # a new run into the folder of a finished one
        ((*FAST, "hydra.run.dir=runs/a", "seed=3"), 2, "error: run directory /"),
        # a resume with a changed config: the run's overrides must stay what it trained with
        (("resume=runs/a", "model=lenet5"), 2, "the config differs from the run's config.yaml in model."),
        # a resume of a finished run that asks for nothing more
        (("resume=runs/a",), 0, "the run finished (1 epochs, metrics.json) and nothing asks for more"),
    ],
    ids=["new-run-into-it", "changed-resume", "finished-resume"],
)
def test_a_refused_command_changes_no_byte_of_the_run(finished, args, code, line):
    before = folder_digest(finished)
    result = vr("train", *args, cwd=finished.parent.parent)
    assert result.returncode == code, result.stderr[-3000:]
    output = (result.stdout + result.stderr).strip().splitlines()
    assert len(output) == 1 and line in output[0], output
    assert folder_digest(finished) == before
    overrides = (finished / ".hydra" / "overrides.yaml").read_text()
    assert "lenet5" not in overrides.replace("lenet5_modern", "") and "seed=3" not in overrides


def test_a_lengthened_finished_run_keeps_the_figures_of_its_first_stretch(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    first = train(fast_config("task.scheduler.name=none"), run_dir)
    with pytest.raises(NothingToResume, match="nothing asks for more"):
        train(fast_config("task.scheduler.name=none", f"resume={run_dir}"), run_dir)
    longer = fast_config(
        "task.scheduler.name=none", "trainer.max_epochs=2", "test_after_fit=false", f"resume={run_dir}"
    )
    # Stopped in its second stretch: unfinished (metrics.json set aside), and resumed again.
    crash_at(7, monkeypatch)
    with pytest.raises(RuntimeError, match="crashed at step 7"):
        train(longer, run_dir)
    monkeypatch.undo()
    assert not (run_dir / "metrics.json").exists()
    assert json.loads((run_dir / "metrics.previous.json").read_text()) == first
    second = train(longer, run_dir)
    assert not (run_dir / "metrics.previous.json").exists()
    stored = json.loads((run_dir / "metrics.json").read_text())
    assert stored == second and (second["epochs"], second["global_step"]) == (2, 10)
    # Every figure of the first stretch is there: the ones measured again are new, the test of epoch 1's weights
    # (not tested again) is gone rather than shown beside epoch 2's.
    assert set(second["metrics"]) == {k for k in first["metrics"] if not k.startswith("test/")}
    assert second["metrics"]["val/loss"] != first["metrics"]["val/loss"]
    assert second["gflops"] == first["gflops"] and second["seconds"] > first["seconds"]
    assert second["limits"]["max_epochs"] == 2


def test_a_resume_refused_after_the_data_and_task_are_set_up_changes_no_byte(tmp_path):
    run_dir = tmp_path / "run"
    train(fast_config(), run_dir)
    (run_dir / "metrics.json").unlink()  # as if killed during its test
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:5000])
    before = folder_digest(run_dir)
    with pytest.raises(DataError, match="truncated, corrupt or not a PyTorch file"):
        train(fast_config("data.num_workers=1", f"resume={run_dir}"), run_dir)  # config.yaml would say 1
    assert folder_digest(run_dir) == before


def test_a_run_from_before_the_configs_gained_keys_resumes(tmp_path):
    """Its config.yaml lacks on_error (and its checkpoints hold ModelCheckpoint's state, under its key)."""
    run_dir = tmp_path / "run"
    train(fast_config("task.scheduler.name=none"), run_dir)
    config = (run_dir / "config.yaml").read_text()
    (run_dir / "config.yaml").write_text(config.replace("on_error: stop\n", ""))
    summary = train(fast_config("task.scheduler.name=none", "trainer.max_epochs=2", f"resume={run_dir}"), run_dir)
    assert summary["epochs"] == 2
    options = {"dirpath": tmp_path, "filename": "best", "monitor": "val/acc1", "mode": "max"}
    assert RunCheckpoint(**options).state_key == ModelCheckpoint(**options).state_key


def test_merge_summaries_keeps_what_the_new_stretch_did_not_measure():
    previous = {"metrics": {"test/acc1": 0.9, "val/acc1": 0.8}, "global_step": 5, "gflops": 1.0, "seconds": 2.0}
    tested = {"metrics": {"test/acc1": 0.95}, "global_step": 10, "gflops": None, "tested_checkpoint": "c", "seconds": 1}
    assert merge_summaries(previous, tested) == {
        "metrics": {"test/acc1": 0.95, "val/acc1": 0.8},
        "global_step": 10,
        "gflops": 1.0,
        "tested_checkpoint": "c",
        "seconds": 3.0,
    }
    untested = {"metrics": {}, "global_step": 10, "tested_checkpoint": None, "seconds": 1.0}
    assert merge_summaries(previous, untested)["metrics"] == {"val/acc1": 0.8}


def test_checkpoint_state_names_its_files_relative_to_the_run_folder(tmp_path):
    saved = RunCheckpoint(dirpath=tmp_path / "old" / "checkpoints", filename="best", monitor="val/acc1")
    saved.best_model_path = str(tmp_path / "old" / "checkpoints" / "best.ckpt")
    saved.best_k_models = {saved.best_model_path: torch.tensor(0.5)}
    state = saved.state_dict()
    assert state["best_model_path"] == "best.ckpt" and list(state["best_k_models"]) == ["best.ckpt"]

    for stored in (state, {**state, "dirpath": saved.dirpath, "best_model_path": saved.best_model_path}):
        moved = RunCheckpoint(dirpath=tmp_path / "new" / "checkpoints", filename="best", monitor="val/acc1")
        moved.load_state_dict(stored)  # the new format, and an absolute one from before
        assert moved.best_model_path == str(tmp_path / "new" / "checkpoints" / "best.ckpt")


def test_a_moved_run_resumes_and_tests_its_own_checkpoints(tmp_path):
    original, moved = tmp_path / "a", tmp_path / "b"
    own = train(fast_config("seed=1", "test_checkpoint=best"), original)
    shutil.move(original, moved)
    (moved / "metrics.json").unlink()  # as if killed during its test: resuming it tests best.ckpt
    other = train(fast_config("seed=2", "model=lenet5"), original)  # another run where it was
    resumed = train(fast_config("seed=1", "test_checkpoint=best", f"resume={moved}"), moved)
    assert resumed["tested_checkpoint"] == resumed["best_checkpoint"] == "checkpoints/best.ckpt"
    assert resumed["resumed_from"] == "checkpoints/last.ckpt"
    assert resumed["metrics"]["test/acc1"] == own["metrics"]["test/acc1"] != other["metrics"]["test/acc1"]


def test_a_second_holder_of_the_run_lock_is_refused_naming_the_first(tmp_path):
    with RunLock(tmp_path):
        holder = (tmp_path / "run.lock").read_text()
        assert f"pid {os.getpid()} on host " in holder
        enter = (
            f"from pathlib import Path; from vision_research.run_dir import RunLock; RunLock(Path({str(tmp_path)!r}))"
        )
        result = subprocess.run([sys.executable, "-c", enter + ".__enter__()"], capture_output=True, text=True)
        assert (
            "RunDirectoryInUse" in result.stderr
            and f"being written by another process ({holder.strip()})" in result.stderr
        )
        with pytest.raises(RunDirectoryInUse):
            RunLock(tmp_path).check_free()
    assert (tmp_path / "run.lock").read_text() == ""
    RunLock(tmp_path).check_free()  # free again, and left as it was
    assert (tmp_path / "run.lock").read_text() == ""
    with RunLock(tmp_path), pytest.raises(RunDirectoryInUse):
        RunLock(tmp_path).__enter__()  # the same process, through another open file: refused too


def start_vr_train(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "vision_research.cli", "train", "callbacks.progress_bar=none", *args]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_runs_into_one_folder_started_together_one_runs_the_other_names_it(tmp_path):
    # An epoch of 300 small batches (seconds): the first run still holds the folder when the second gets there.
    longer = [*FAST, "trainer.limit_train_batches=300", "data.batch_size=8", "hydra.run.dir=runs/x"]
    first = start_vr_train(*longer, "seed=0", cwd=tmp_path)
    time.sleep(0.1)
    second = start_vr_train(*longer, "seed=1", cwd=tmp_path)
    results = [(p.wait(timeout=300), *p.communicate()) for p in (first, second)]
    assert sorted(code for code, _, _ in results) == [0, 2], results
    (winner,) = [p for p, (code, _, _) in zip((first, second), results, strict=True) if code == 0]
    (refused,) = [err for code, _, err in results if code == 2]
    assert refused.strip().startswith("error: run directory ") and len(refused.strip().splitlines()) == 1, refused
    assert f"being written by another process (vr train, pid {winner.pid} on host " in refused
    config = (tmp_path / "runs" / "x" / "config.yaml").read_text()
    summary = json.loads((tmp_path / "runs" / "x" / "metrics.json").read_text())
    assert f"seed: {0 if winner is first else 1}\n" in config and summary["epochs"] == 1


# The default run in 5 short epochs of small batches (about 3 s each on 2 cores): long enough to be signalled, and
# to meet a second command, while it trains.
SIGNALLED = [
    "trainer.max_epochs=5",
    "trainer.limit_train_batches=250",
    "trainer.limit_val_batches=2",
    "trainer.deterministic=true",
    "data.batch_size=8",
]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    """The summary of the run below, not stopped."""
    root = tmp_path_factory.mktemp("uninterrupted")
    run = start_vr_train(*SIGNALLED, "hydra.run.dir=whole", cwd=root)
    assert run.wait(timeout=300) == 0, run.communicate()
    return json.loads((root / "whole" / "metrics.json").read_text())


def wait_until(run: subprocess.Popen, ready: Callable[[], bool]) -> None:
    """Until ``ready()``, the run still going."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and run.poll() is None:
        if ready():
            return
        time.sleep(0.1)
    raise AssertionError(f"the run ended before it was ready: {run.communicate()}")


@pytest.mark.slow  # a minute per signal: three runs of 5 epochs
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_run_with_its_code_and_resume_gives_the_uninterrupted_figures(tmp_path, uninterrupted, stop):
    """The run above, refused a second writer while it trains, stopped by ``stop`` in its third epoch or later, then
    resumed: the same figures as the run that was not stopped."""
    run_dir, last = tmp_path / "stopped", tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    stopped = start_vr_train(*SIGNALLED, "hydra.run.dir=stopped", cwd=tmp_path)
    wait_until(stopped, lambda: (run_dir / "run.lock").is_file() and (run_dir / "run.lock").read_text() != "")
    meanwhile = vr("train", "resume=stopped", cwd=tmp_path)
    assert meanwhile.returncode == 2 and f"(vr train, pid {stopped.pid} on host" in meanwhile.stderr, meanwhile.stderr
    wait_until(stopped, lambda: last.is_file() and torch.load(last, weights_only=True)["epoch"] >= 1)
    stopped.send_signal(stop)
    code, _, err = stopped.wait(timeout=120), *stopped.communicate()
    assert code == 128 + stop, err[-3000:]
    epoch = torch.load(last, weights_only=True)["epoch"] + 1
    assert err.strip().splitlines()[-1] == (
        f"error: run {run_dir} stopped by {signal.Signals(stop).name}; checkpoints/last.ckpt (the end of epoch "
        f"{epoch}) is kept: vr train resume={run_dir} continues it"
    )
    assert not (run_dir / "metrics.json").exists() and epoch < 5

    resumed = start_vr_train("resume=stopped", cwd=tmp_path)
    assert resumed.wait(timeout=300) == 0, resumed.communicate()
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert (summary["epochs"], summary["global_step"]) == (uninterrupted["epochs"], uninterrupted["global_step"])
    for name in FIGURES:
        assert summary["metrics"][name] == uninterrupted["metrics"][name], name
