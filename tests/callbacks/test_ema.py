"""The warm-up EMA of the weights: TensorFlow's decay schedule, written out by hand, through torch's AveragedModel."""

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel
from torch import nn
from torch.optim.swa_utils import AveragedModel

from vision_research.callbacks import WarmupEMA
from vision_research.callbacks.ema import warmup_decay, warmup_ema_fn
from vision_research.errors import ConfigError


def test_decay_ramps_as_one_plus_n_over_ten_plus_n_up_to_the_target():
    assert float(warmup_decay(0.999, 0)) == pytest.approx(0.1)
    assert float(warmup_decay(0.999, 1)) == pytest.approx(2 / 11)
    assert float(warmup_decay(0.999, 1000)) == pytest.approx(1001 / 1010)
    assert float(warmup_decay(0.9, 1000)) == pytest.approx(0.9)


def test_averaged_model_follows_the_warmup_recurrence():
    """e₀ = p₀ (AveragedModel copies the first), then eₙ = dₙ eₙ₋₁ + (1 − dₙ) pₙ with dₙ = (1 + n) / (10 + n)."""
    layer = nn.BatchNorm1d(3)
    average = AveragedModel(layer, avg_fn=warmup_ema_fn(0.999), use_buffers=True)
    values = [torch.tensor([1.0, -2.0, 3.0]), torch.tensor([5.0, 0.0, -1.0]), torch.tensor([2.0, 2.0, 2.0])]
    expected = None
    for n, value in enumerate(values):
        with torch.no_grad():
            layer.weight.copy_(value)
            layer.running_mean.copy_(2 * value)
        average.update_parameters(layer)
        d = (1 + n) / (10 + n)
        expected = value if expected is None else d * expected + (1 - d) * value
        torch.testing.assert_close(average.module.weight, expected)
        torch.testing.assert_close(average.module.running_mean, 2 * expected)  # buffers are averaged too


def test_decay_outside_zero_one_is_a_config_error():
    with pytest.raises(ConfigError, match="ema_decay"):
        WarmupEMA(1.0)


class WeightsAtTest(BoringModel):
    """Records the weights its test step runs with."""

    def test_step(self, batch, batch_idx):
        self.tested = self.layer.weight.detach().clone()
        return super().test_step(batch, batch_idx)


def test_the_test_from_a_checkpoint_after_fitting_scores_the_average(tmp_path):
    model = WeightsAtTest()
    trainer = Trainer(
        default_root_dir=tmp_path,
        max_epochs=1,
        limit_train_batches=8,
        limit_val_batches=1,
        limit_test_batches=1,
        callbacks=[WarmupEMA(0.9), ModelCheckpoint(dirpath=tmp_path, save_last=True)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model)
    trainer.test(model, ckpt_path=str(tmp_path / "last.ckpt"), weights_only=False)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)
    average, training = saved["state_dict"]["layer.weight"], saved["current_model_state"]["layer.weight"]
    assert not torch.equal(average, training)
    torch.testing.assert_close(model.tested, average)
