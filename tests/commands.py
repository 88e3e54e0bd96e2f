"""Running ``vr`` as a user does: a fresh process of the command, offline, with what it printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# A few batches of one epoch, no progress bar, every step logged: the runs the tests train.
FAST = ["debug=fast", "callbacks.progress_bar=none", "trainer.log_every_n_steps=1"]
# The embedded shapes scenes, 16 / 8 / 8 of them, read in the training process, without TensorBoard.
SMALL_SHAPES = [
    "data.num_train=16",
    "data.num_val=8",
    "data.num_test=8",
    "data.batch_size=8",
    "data.num_workers=0",
    "logger.tensorboard=false",
]


def vr(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``vr ARGS`` in a new process in ``cwd``: its exit code, stdout and stderr."""
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "vision_research.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
