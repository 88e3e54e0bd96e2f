"""The acceptance run: `vr train` with no arguments reaches >= 98 % on the held-out embedded MNIST digits."""

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_default_run_reaches_98_percent_on_held_out_digits(tmp_path):
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "vision_research.cli", "train", "callbacks.progress_bar=none"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (metrics_file,) = (tmp_path / "runs").glob("*/*_lenet5_modern_mnist/metrics.json")
    summary = json.loads(metrics_file.read_text())
    assert summary["epochs"] == 40 and summary["tested_checkpoint"].endswith("last.ckpt")
    assert summary["metrics"]["test/acc1"] >= 0.98, summary["metrics"]
