"""DDP on CPU: 2 gloo processes give the validation metrics of one process (no sample counted twice,
confusion matrices summed, COCO detections gathered), for classification, segmentation and detection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vision_research.data.shapes import generate_shapes

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
