"""Stop a run cleanly on SIGTERM or SIGINT.

SIGTERM is how schedulers end a job (SLURM's pre-emption and time limit send it, then SIGKILL after a grace time);
SIGINT is Ctrl+C. Lightning's own SIGTERM handling ends ``fit`` with a ``SystemExit`` of code 0, and Ctrl+C with
code 1, both without a word on what was kept. Here either signal stops the run at the end of the batch in progress
with :class:`~vision_research.errors.RunInterrupted` (exit code 128 + the signal's number). Nothing is written at
that point: ``checkpoints/last.ckpt``, written atomically at the end of the last whole epoch, is what ``resume=``
continues from, and continues exactly (a checkpoint from the middle of an epoch could not restore the data order).
A second Ctrl+C interrupts at once.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from ..errors import RunInterrupted

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopOnSignal(Callback):
    """Turns SIGTERM / SIGINT into :class:`RunInterrupted` at the next batch boundary of any stage; a context manager
    that installs the handlers for the run's life (the main thread only: signals are delivered there)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            self._previous = {signum: signal.signal(signum, self._receive) for signum in STOP_SIGNALS}
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, trace: TracebackType | None) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _receive(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    def stop_if_signalled(self, trainer: L.Trainer) -> None:
        """Raise ``RunInterrupted`` if a stop signal has arrived — under DDP if it has on any process, decided by all
        of them together (they would otherwise stop at different batches and wait for each other)."""
        received = self.received is not None
        if trainer.world_size > 1:
            received = trainer.strategy.reduce_boolean_decision(received, all=False)
        if received:
            signum = self.received or signal.SIGTERM
            raise RunInterrupted(f"stopped by {signal.Signals(signum).name}", signum)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.stop_if_signalled(trainer)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stop_if_signalled(trainer)

    # Evaluation batches may differ in number between processes: there, only a single process stops mid-loop.
    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.world_size == 1:
            self.stop_if_signalled(trainer)

    def on_test_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.world_size == 1:
            self.stop_if_signalled(trainer)
