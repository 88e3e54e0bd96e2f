"""Fast defaults: what ``precision: auto`` resolves to on each kind of hardware, and the SpeedOptions callback."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir

from vision_research import speed
from vision_research.build import trainer_options
from vision_research.config_tree import config_dir
from vision_research.speed import SpeedOptions, resolve_precision, speed_options
from vision_research.tasks import ImageClassifier


@pytest.mark.parametrize(
    ("cuda", "cuda_bf16", "cpu_bf16", "accelerator", "expected"),
    [
        (False, False, True, "auto", "bf16-mixed"),  # AMX / AVX512-BF16 CPU (this machine)
        (False, False, False, "auto", "32-true"),  # a CPU without native bf16: emulated bf16 would be slower
        (True, True, False, "auto", "bf16-mixed"),  # Ampere and newer
        (True, False, False, "gpu", "16-mixed"),  # older GPUs: fp16 with loss scaling
        (True, True, False, "cpu", "32-true"),  # a GPU is there but the run is on the CPU
    ],
)
def test_auto_precision_follows_the_hardware(monkeypatch, cuda, cuda_bf16, cpu_bf16, accelerator, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: cuda_bf16)
    monkeypatch.setattr(speed, "cpu_has_native_bf16", lambda: cpu_bf16)
    assert resolve_precision("auto", accelerator) == expected


def test_an_explicit_precision_is_kept():
    assert resolve_precision("32-true") == "32-true"
    assert resolve_precision(16) == "16"  # Lightning's own spellings pass through to its check


def test_the_default_config_resolves_auto_and_can_turn_it_off():
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        default = compose(config_name="train")
        full = compose(config_name="train", overrides=["trainer.precision=32-true", "speed.channels_last=false"])
    assert default.trainer.precision == "auto" and default.speed.channels_last and not default.speed.torch_compile
    assert trainer_options(default)["precision"] == resolve_precision("auto")
    assert trainer_options(full)["precision"] == "32-true" and not full.speed.channels_last


def conv_weights(task: torch.nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in task.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)]


@pytest.mark.parametrize("channels_last", [True, False])
def test_speed_options_put_the_weights_in_channels_last_order(channels_last):
    task = ImageClassifier("resnet20", num_classes=10, in_chans=3)
    SpeedOptions(channels_last=channels_last).setup(None, task, "fit")
    weights = conv_weights(task)
    assert len(weights) == 19
    assert all(w.is_contiguous(memory_format=torch.channels_last) == channels_last for w in weights)
    assert all(w.is_contiguous() != channels_last for w in weights)
    # The outputs do not change (to float rounding), only the memory order.
    reference = ImageClassifier("resnet20", num_classes=10, in_chans=3)
    reference.load_state_dict(task.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(task.eval()(x), reference.eval()(x), atol=1e-5)


def test_speed_options_compile_in_place_and_keep_the_checkpoint_keys():
    task = ImageClassifier("resnet20", num_classes=10, in_chans=3)
    keys = list(task.state_dict())
    SpeedOptions(channels_last=False, torch_compile=True).setup(None, task, "fit")
    assert task._compiled_call_impl is not None  # compiled lazily, at the first call
    assert list(task.state_dict()) == keys


def test_speed_options_come_from_a_runs_speed_node_with_defaults_for_older_runs():
    options = speed_options({"channels_last": False})
    assert (options.channels_last, options.torch_compile) == (False, False)
    removed = speed_options({"torch_compile": True, "flush_denormal": True})  # flush_denormal: since removed
    assert removed.torch_compile is True
    assert speed_options({"compile": True}).torch_compile is True  # the key's name before torch_compile
    assert speed_options(None).channels_last is True
