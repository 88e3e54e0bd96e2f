"""The warm-up EMA of the weights: TensorFlow's decay schedule, written out by hand, through torch's AveragedModel."""

import pytest
import torch
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
