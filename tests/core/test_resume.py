"""Resume after a crash: ``vr train resume=RUN_DIR`` continues from ``checkpoints/last.ckpt`` to the figures of the
uninterrupted run, refuses a changed config naming the keys, and checkpoints are written atomically."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import vision_research.train as train_module
from tests.commands import SMALL_SHAPES
from tests.core.test_training_faults import fast_config
from vision_research.checkpoints import AtomicCheckpointIO
from vision_research.errors import ConfigError, DataError
from vision_research.resume import resume_arguments
from vision_research.train import train

# Three short epochs of the default data (5 training batches each), deterministic kernels.
THREE_EPOCHS = ["trainer.max_epochs=3", "trainer.deterministic=true", "trainer.limit_val_batches=1"]
FIGURES = ("test/acc1", "test/loss", "best/val/acc1", "val/loss", "train/loss")


class CrashAtStep(L.Callback):
    """Raises in the middle of an epoch, after ``step`` optimizer steps (a crash that Lightning cannot finish)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"crashed at step {self.step}")


def crash_at(step: int, monkeypatch: pytest.MonkeyPatch) -> None:
    build_callbacks = train_module.build_callbacks
    monkeypatch.setattr(train_module, "build_callbacks", lambda *args: [*build_callbacks(*args), CrashAtStep(step)])


def scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_a_run_resumed_after_a_crash_ends_with_the_uninterrupted_runs_figures(tmp_path, monkeypatch):
    whole = train(fast_config(*THREE_EPOCHS), tmp_path / "whole")

    crashed = tmp_path / "crashed"
    crash_at(12, monkeypatch)  # epoch 2 of 3, after last.ckpt of epoch 1 (step 10)
    with pytest.raises(RuntimeError, match="crashed at step 12"):
        train(fast_config(*THREE_EPOCHS), crashed)
    monkeypatch.undo()
    assert not (crashed / "metrics.json").exists()
    resumed = train(fast_config(*THREE_EPOCHS, f"resume={crashed}"), crashed)

    assert resumed["resumed_from"] == "checkpoints/last.ckpt"
    assert (resumed["epochs"], resumed["global_step"]) == (whole["epochs"], whole["global_step"]) == (3, 15)
    for name in FIGURES:
        assert resumed["metrics"][name] == whole["metrics"][name], name
    # TensorBoard continues the same curves: each step once, the crashed stretch (steps 11-12) hidden.
    assert scalars(crashed, "val/acc1") == scalars(tmp_path / "whole", "val/acc1")
    steps = [step for step, _ in scalars(crashed, "train/loss")]
    assert steps == sorted(set(steps)) == [step for step, _ in scalars(tmp_path / "whole", "train/loss")]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_run_on_augmented_image_files_resumes_to_the_same_figures(tmp_path, monkeypatch, workers):
    """The shapes scenes through albumentations' standard preset, read in the training process (the pipeline's
    generators are kept in the checkpoint) and by two loader workers (seeded each epoch from torch's generator)."""
    shapes = ["experiment=fcn_shapes", "model.width_mult=0.25", *SMALL_SHAPES, f"data.num_workers={workers}"]
    options = [*shapes, "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", *THREE_EPOCHS]
    monkeypatch.setenv("VR_DATA_DIR", str(tmp_path / "data"))
    whole = train(fast_config(*options), tmp_path / "whole")
    crashed = tmp_path / "crashed"
    crash_at(5, monkeypatch)  # in epoch 3 of 3, after last.ckpt of epoch 2 (step 4)
    with pytest.raises(RuntimeError, match="crashed at step 5"):
        train(fast_config(*options), crashed)
    monkeypatch.undo()
    monkeypatch.setenv("VR_DATA_DIR", str(tmp_path / "data"))
    resumed = train(fast_config(*options, f"resume={crashed}"), crashed)
    assert (resumed["epochs"], resumed["global_step"]) == (whole["epochs"], whole["global_step"]) == (3, 6)
    for name in ("test/miou", "test/loss", "val/loss", "train/loss"):
        assert resumed["metrics"][name] == whole["metrics"][name], name


def test_a_resumed_run_refuses_a_changed_config_naming_the_keys(tmp_path):
    run_dir = tmp_path / "run"
    train(fast_config(), run_dir)
    with pytest.raises(ConfigError) as error:
        train(fast_config("model=lenet5", "task.optimizer.lr=0.5", f"resume={run_dir}"), run_dir)
    message = str(error.value)
    assert f"resume={run_dir}: the config differs from the run's config.yaml in " in message
    assert "model.name: 'lenet5_modern' -> 'lenet5'" in message and "task.optimizer.lr:" in message
    assert "trainer.max_epochs" in message  # what may change is listed
    with pytest.raises(ConfigError, match=f"resume={run_dir} continues that run in its own directory, not in "):
        train(fast_config(f"resume={run_dir}"), tmp_path / "elsewhere")


def test_lengthening_a_run_is_refused_under_a_length_planned_schedule_and_allowed_without(tmp_path):
    cosine = tmp_path / "cosine"
    train(fast_config(), cosine)
    refusal = r"trainer.max_epochs changes from 1 to 2, but the cosine schedule .*pretrained="
    with pytest.raises(ConfigError, match=refusal):
        train(fast_config("trainer.max_epochs=2", f"resume={cosine}"), cosine)

    constant = tmp_path / "constant"
    train(fast_config("task.scheduler.name=none"), constant)
    summary = train(fast_config("task.scheduler.name=none", "trainer.max_epochs=2", f"resume={constant}"), constant)
    assert (summary["epochs"], summary["global_step"]) == (2, 10)
    assert sorted(p.name for p in (constant / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


def test_a_truncated_last_checkpoint_is_a_one_line_error_naming_it(tmp_path):
    run_dir = tmp_path / "run"
    train(fast_config(), run_dir)
    (run_dir / "metrics.json").unlink()  # as if killed during its test: the run is unfinished
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:5000])
    with pytest.raises(DataError, match=f"{last}: truncated, corrupt or not a PyTorch file"):
        train(fast_config(f"resume={run_dir}"), run_dir)


def test_resume_arguments_replay_the_runs_overrides_before_the_new_ones(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("seed: 3\n")
    (run_dir / ".hydra" / "overrides.yaml").write_text("- model=resnet20\n- seed=3\n- trainer.max_epochs=5\n")
    args = resume_arguments([f"resume={run_dir}", "trainer.max_epochs=9"])
    quoted = f"'{run_dir.resolve()}'"
    assert args == ["model=resnet20", "seed=3", "trainer.max_epochs=9", f"hydra.run.dir={quoted}", f"resume={quoted}"]
    # A run resumed before lists resume= among its overrides: expanding again gives the same arguments.
    (run_dir / ".hydra" / "overrides.yaml").write_text("\n".join(f"- {a}" for a in args if "hydra" not in a))
    assert resume_arguments([f"resume={run_dir}", "trainer.max_epochs=9"]) == args


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: None, "no such run directory"),
        (lambda d: d.mkdir(), "not a run directory of vr train"),
    ],
)
def test_resume_of_something_that_is_not_a_run_directory_is_refused(tmp_path, make, message):
    make(tmp_path / "run")
    with pytest.raises(ConfigError, match=f"resume={tmp_path / 'run'}: {message}"):
        resume_arguments([f"resume={tmp_path / 'run'}"])
    with pytest.raises(ConfigError, match="cannot be part of a sweep"):
        resume_arguments(["-m", f"resume={tmp_path / 'run'}"])


def test_a_checkpoint_write_cut_short_leaves_the_previous_file_under_its_name(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 1, "weights": torch.ones(1000)}, path)

    def killed_mid_write(obj: object, file: object) -> None:
        file.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"epoch": 2, "weights": torch.zeros(1000)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no .partial left


def test_a_full_disk_during_a_checkpoint_is_one_line_naming_the_file(tmp_path, monkeypatch):
    def disk_full(obj: object, file: object) -> None:
        file.write(b"PK\x03\x04 half a zip")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    run_dir = tmp_path / "run"
    with pytest.raises(DataError) as error:
        train(fast_config(), run_dir)
    message = str(error.value)
    assert message.startswith(f"{run_dir / 'checkpoints'}/") and "no space left on the device (" in message
    assert "\n" not in message and not list(run_dir.glob("checkpoints/*"))


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_kill_9_and_resume_of_the_default_run_matches_the_uninterrupted_run(tmp_path, workers):
    """The acceptance run: the default run (LeNet-5 on the embedded digits) for 4 deterministic epochs, once
    through and once killed with SIGKILL during its third epoch, then resumed; in the training process and with two
    loader workers."""
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "HF_HUB_OFFLINE": "1"}
    options = [
        "trainer.max_epochs=4",
        "trainer.deterministic=true",
        "callbacks.progress_bar=none",
        f"data.num_workers={workers}",
    ]

    def vr_train(*args: str) -> subprocess.Popen:
        command = [sys.executable, "-m", "vision_research.cli", "train", *options, *args]
        return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    whole = vr_train("hydra.run.dir=whole")
    assert whole.wait(timeout=600) == 0, whole.stderr.read().decode()[-3000:]

    killed = vr_train("hydra.run.dir=killed")
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and killed.poll() is None:
        if last.is_file() and torch.load(last, weights_only=True)["epoch"] >= 1:  # two epochs done
            break
        time.sleep(0.2)
    time.sleep(1.0)  # into the third epoch
    assert killed.poll() is None, "the run ended before it could be killed"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "killed" / "metrics.json").exists()

    resumed = vr_train("resume=killed")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read().decode()[-3000:]
    whole_summary = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    resumed_summary = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert resumed_summary["resumed_from"] == "checkpoints/last.ckpt" and whole_summary["epochs"] == 4
    for key in ("epochs", "global_step"):
        assert resumed_summary[key] == whole_summary[key], key
    for name in FIGURES:
        assert resumed_summary["metrics"][name] == whole_summary["metrics"][name], name
