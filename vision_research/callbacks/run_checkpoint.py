"""Lightning's ``ModelCheckpoint`` whose saved state names its files relative to the checkpoint folder.

Lightning stores absolute paths (``best_model_path``, ``best_k_models``, ...) in every checkpoint and reloads
``best_model_path`` even when the folder has moved: a moved run resumed and tested the file at its old path, which
may be another run's. Here the state holds paths relative to ``dirpath`` and is rebased onto the folder of the run
that loads it (absolute paths of older checkpoints are rebased the same way).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint

PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` with its state's paths relative to its folder (see the module's docstring)."""

    @property
    def state_key(self) -> str:
        """``ModelCheckpoint``'s key: checkpoints written before this class, and after, find each other's state."""
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        folder = str(state["dirpath"])
        state.update({key: _relative(state[key], folder) for key in PATH_KEYS})
        state["best_k_models"] = {_relative(path, folder): score for path, score in state["best_k_models"].items()}
        state["dirpath"] = "."
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = str(state_dict.get("dirpath", "."))
        state = {**state_dict, "dirpath": self.dirpath}
        state.update({key: self._rebased(state_dict.get(key, ""), saved) for key in PATH_KEYS})
        state["best_k_models"] = {
            self._rebased(path, saved): score for path, score in state_dict.get("best_k_models", {}).items()
        }
        super().load_state_dict(state)

    def _rebased(self, path: str, saved_folder: str) -> str:
        """``path`` (relative to ``saved_folder``, or absolute under it) inside this callback's folder."""
        return str(Path(self.dirpath) / _relative(path, saved_folder)) if path else path


def _relative(path: str, folder: str) -> str:
    return os.path.relpath(path, folder) if path and os.path.isabs(path) else path
