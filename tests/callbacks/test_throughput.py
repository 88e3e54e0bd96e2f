"""TrainingThroughput: images counted per training batch, validation time left out, FLOPs of one forward."""

import time

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from vision_research.callbacks import TrainingThroughput

VALIDATION_PAUSE = 0.25


class SlowValidation(L.LightningModule):
    """A linear classifier whose validation batches each take VALIDATION_PAUSE seconds."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.flatten(1))

    def training_step(self, batch, batch_idx):
        images, labels = batch
        return torch.nn.functional.cross_entropy(self(images), labels)

    def validation_step(self, batch, batch_idx):
        time.sleep(VALIDATION_PAUSE)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader(batches: int, batch_size: int) -> DataLoader:
    images = torch.randn(batches * batch_size, 3, 2, 2)
    return DataLoader(TensorDataset(images, torch.randint(0, 5, (len(images),))), batch_size=batch_size)


def test_counts_training_images_and_leaves_validation_time_out():
    throughput = TrainingThroughput()
    trainer = L.Trainer(
        max_epochs=2,
        callbacks=[throughput],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
    )
    started = time.perf_counter()
    trainer.fit(SlowValidation(), loader(batches=6, batch_size=4), loader(batches=2, batch_size=4))
    total = time.perf_counter() - started
    assert throughput.images == 2 * 6 * 4
    validation = 2 * 2 * VALIDATION_PAUSE
    assert 0 < throughput.seconds < total - validation
    assert throughput.images_per_second == pytest.approx(throughput.images / throughput.seconds)
    assert trainer.callback_metrics["train/images_per_second"] > 0
    # One 12-feature sample through Linear(12, 5): 12 × 5 multiply-adds = 120 FLOPs.
    assert throughput.gflops == pytest.approx(120 / 1e9)
