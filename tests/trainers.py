"""A quiet CPU Trainer for tests that fit a task by hand: float32, no logger, checkpoints, progress bar or summary."""

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback


def cpu_trainer(max_epochs: int, *callbacks: Callback, **options: Any) -> L.Trainer:
    """``L.Trainer`` on the CPU for ``max_epochs`` with ``callbacks``; ``options`` override the quiet defaults."""
    settings = {
        "accelerator": "cpu",
        "precision": "32-true",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        **options,
    }
    return L.Trainer(max_epochs=max_epochs, callbacks=list(callbacks), **settings)
