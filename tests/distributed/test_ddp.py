"""DDP on CPU: 2 gloo processes give the validation metrics of one process (no sample counted twice,
confusion matrices summed, COCO detections gathered), for classification, segmentation and detection;
`vr train trainer=ddp` re-launches itself into one run directory; SyncBatchNorm when asked (its equivalence
with one process needs 2 GPUs); launch mistakes are one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir

from vision_research.build import trainer_options
from vision_research.config_tree import config_dir
from vision_research.data.shapes import generate_shapes
from vision_research.tasks import ImageClassifier

from .evaluate import SHAPES

SCRIPT = Path(__file__).with_name("evaluate.py")
METRICS = {
    "classification": ["val/acc1", "val/acc5"],
    "segmentation": ["val/miou", "val/pixel_acc", "val/mean_acc"],
    "detection": ["val/map", "val/map_50", "val/mar_100"],
}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("ddp") / "shapes", image_size=64, **SHAPES)


def evaluate(task: str, devices: int, root: Path, out: Path, *flags: str) -> dict[str, float]:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(SCRIPT.parents[2])}
    command = [sys.executable, str(SCRIPT), task, str(devices), str(out), str(root), *flags]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("task", list(METRICS))
def test_two_processes_give_the_single_process_metrics(task, root, tmp_path):
    single = evaluate(task, 1, root, tmp_path / "one.json")
    double = evaluate(task, 2, root, tmp_path / "two.json")
    for key in METRICS[task]:
        assert double[key] == pytest.approx(single[key], abs=1e-6), key
    assert 0 < single[METRICS[task][0]] < 1  # a non-trivial figure, so that a wrong count would show
    # The comparison can fail: without the metrics' synchronisation each process scores only its own half.
    unsynced = evaluate(task, 2, root, tmp_path / "unsynced.json", "--no-sync")
    assert any(unsynced[key] != pytest.approx(single[key], abs=1e-6) for key in METRICS[task])


def train_step(devices: int, out: Path, *flags: str) -> dict:
    command = [sys.executable, str(SCRIPT.with_name("train_step.py")), str(devices), str(out), *flags]
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parents[2])}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(out)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="torch's SyncBatchNorm runs on CUDA only; needs 2 GPUs")
def test_sync_batchnorm_makes_two_gpu_processes_take_the_single_process_step(tmp_path):
    single = train_step(1, tmp_path / "one.pt")
    synced = train_step(2, tmp_path / "synced.pt", "--sync-batchnorm")
    unsynced = train_step(2, tmp_path / "unsynced.pt")
    assert single["sync_layers"] == 0 and unsynced["sync_layers"] == 0
    assert synced["sync_layers"] == 19  # every BatchNorm2d of resnet20: the stem's and two per block (9 blocks)

    def largest_difference(a: dict, b: dict) -> float:
        return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())

    # One step of SGD on all 16 images: weights, biases, running means and variances.
    assert largest_difference(synced["state_dict"], single["state_dict"]) < 1e-5
    assert largest_difference(unsynced["state_dict"], single["state_dict"]) > 1e-3


def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def test_trainer_ddp_with_sync_batchnorm_turns_every_batch_norm_into_sync_batch_norm():
    cfg = compose_train("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.sync_batchnorm=true")
    trainer = L.Trainer(**trainer_options(cfg), logger=False)
    assert trainer.world_size == 2 and type(trainer.strategy).__name__ == "DDPStrategy"
    task = ImageClassifier("resnet20", num_classes=10, in_chans=3)
    batch_norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in task.modules())
    converted = trainer.strategy._layer_sync.apply(task)  # what the DDP strategy does to the module at setup
    assert batch_norms == 19
    assert sum(isinstance(m, torch.nn.SyncBatchNorm) for m in converted.modules()) == batch_norms
    plain = compose_train("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2")
    assert L.Trainer(**trainer_options(plain), logger=False).strategy._layer_sync is None


def vr_train(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    command = [sys.executable, "-m", "vision_research.cli", "train", *args, "callbacks.progress_bar=none"]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


DDP_ON_CPU = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "debug=fast"]


@pytest.mark.slow
def test_vr_train_trainer_ddp_runs_two_processes_into_one_run_directory(tmp_path):
    done = vr_train(tmp_path, *DDP_ON_CPU, "trainer.max_epochs=2")
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").glob("*/*_lenet5_modern_mnist")
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["processes"] == 2 and summary["epochs"] == 2
    assert 0 <= summary["metrics"]["test/acc1"] <= 1
    assert (run_dir / "config.yaml").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "train_ddp_process_1.log").is_file()  # rank 1, started by re-running the command
    assert done.stdout.count("run: ") == 1  # the summary comes from rank 0 only


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["trainer.sync_batchnorm=true"], {}, "trainer.sync_batchnorm=true needs GPUs"),
        ([], {"WORLD_SIZE": "2"}, "add hydra.run.dir="),
        (["-m", "seed=1,2"], {}, "use trainer.strategy=ddp_spawn for sweeps"),
    ],
)
def test_vr_train_ddp_mistakes_are_one_line_errors(tmp_path, args, env, message):
    done = vr_train(tmp_path, *args, *DDP_ON_CPU, env=env)  # -m goes first
    assert done.returncode == 2, done.stderr[-2000:]
    assert message in done.stderr and "Traceback" not in done.stderr


def test_a_sweep_over_several_devices_with_the_auto_strategy_is_refused_too(tmp_path):
    # Lightning turns strategy=auto with 2 devices into its re-launching DDP: the same mistake, said the same way.
    done = vr_train(tmp_path, "-m", "trainer.accelerator=cpu", "trainer.devices=2", "debug=fast", "seed=1,2")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "2 processes with trainer.strategy=auto" in done.stderr and "Traceback" not in done.stderr
