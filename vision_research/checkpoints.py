"""Safe loading of checkpoint and weights files (unpickling never runs code from the file), and atomic writing.

Every load passes ``weights_only=True`` explicitly — :func:`safe_load` here, and the Lightning calls that load a
checkpoint (``load_from_checkpoint``, ``Trainer.test(ckpt_path=...)``) — so only tensors, containers and
primitive types come back. An explicit ``weights_only=True`` is never turned off by the environment: torch lets
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` change only a ``weights_only`` left unset, and
``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` can only make a load safe. The checkpoints of every task hold no type beyond
torch's default allow-list (their hyper-parameters are plain containers), so none is added.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from .errors import DataError

# What torch raises for a file it refuses or cannot read (LookupError: a Lightning checkpoint without its keys;
# OSError: a zip archive cut short).
LOAD_ERRORS = (pickle.UnpicklingError, EOFError, RuntimeError, LookupError, OSError)


def load_error(
    path: str | Path, err: BaseException, problem: str = "truncated, corrupt or not a PyTorch file"
) -> DataError:
    """A one-line ``DataError`` naming ``path``: the pickled type a weights-only load refused, else ``problem`` and the
    first sentence of torch's reason."""
    refused = re.search(r"GLOBAL ([\w.]+)", str(err))
    if isinstance(err, pickle.UnpicklingError) and refused:
        return DataError(
            f"{path}: contains a pickled object of type {refused[1]} that is not allowed; only load checkpoints you "
            "trust, or re-save the weights as a state dict"
        )
    lines = [line.strip() for line in str(err).split("WeightsUnpickler error:")[-1].splitlines() if line.strip()]
    reason = [line.split(". ")[0] for line in lines[:1]]  # the first sentence: torch's zip reader adds a paragraph
    return DataError(f"{path}: {problem} ({': '.join([type(err).__name__, *reason])})")


def safe_load(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; a refused or unreadable file is a one-line ``DataError``."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except LOAD_ERRORS as err:
        raise load_error(path, err) from None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic on local disks: the checkpoint goes to ``<name>.partial`` beside its
    final name, is flushed to disk and then renamed over it, so a kill during the write leaves the previous file (or
    none) under the final name, never half of one. (Lightning's own writer stages in the system's temporary folder,
    whose move onto another file system is a copy that a kill can cut short.) A write that fails leaves no
    ``.partial`` file; a full disk is a one-line ``DataError``. Remote paths keep Lightning's writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if "://" in str(path) or storage_options is not None:
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        try:
            with open(partial, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
        except BaseException as err:
            partial.unlink(missing_ok=True)
            if isinstance(err, OSError) and err.errno == errno.ENOSPC:
                raise DataError(
                    f"{path}: no space left on the device ({shutil.disk_usage(path.parent).free / 2**20:.0f} MiB "
                    "free); the previous checkpoint of this name is kept: free some space and resume the run"
                ) from None
            raise
        os.replace(partial, path)
