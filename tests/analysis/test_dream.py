"""``vr dream``: DeepDream raises the chosen layer's activations; the CLI writes the PNG or one error line."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

from vision_research.analysis import inspect
from vision_research.analysis.dream import deep_dream, octave_sizes
from vision_research.cli import main
from vision_research.errors import ConfigError
from vision_research.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models (conftest.py)


def test_octave_sizes_shrink_by_the_scale_smallest_first():
    # 64 / 1.4² = 32.65, 80 / 1.4² = 40.8; 64 / 1.4 = 45.7, 80 / 1.4 = 57.1
    assert octave_sizes((64, 80), 3, 1.4) == [(33, 41), (46, 57), (64, 80)]
    assert octave_sizes((64, 80), 1, 1.4) == [(64, 80)]


def test_deep_dream_raises_the_layer_activation(photo):
    torch.manual_seed(0)
    model = create_model("resnet18", width_mult=0.25).eval()
    spec = inspect.InputSpec(3, (64, 64), model.default_cfg["mean"], model.default_cfg["std"])
    image = inspect.prepare_image(photo, spec)[0]
    low, high = inspect.pixel_bounds(spec)

    def activation_norm(x: torch.Tensor) -> float:
        with inspect.hooked_outputs(model, ["layer2"]) as outputs, torch.no_grad():
            model(x)
        return float(outputs["layer2"].norm())

    norms = []
    for step_size in (0.02, 0.05):
        generator = torch.Generator().manual_seed(0)
        dreamed = deep_dream(
            model, image, ["layer2"], 2, 1.4, 4, step_size, 32, generator, bounds=(low, high), progress=False
        )
        assert dreamed.shape == image.shape and not dreamed.requires_grad
        assert (dreamed >= low - 1e-6).all() and (dreamed <= high + 1e-6).all()
        norms.append(activation_norm(dreamed))
    before = activation_norm(image)
    assert before < norms[0] < norms[1] and norms[1] > 1.05 * before, (before, norms)  # longer steps, higher


class WithAuxiliary(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.unused = nn.Conv2d(4, 4, 1)  # registered, never called (as an auxiliary head in eval mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_a_module_the_forward_pass_skips_is_a_config_error():
    model = WithAuxiliary()
    with pytest.raises(ConfigError, match="module 'unused' did not run in the forward pass"):
        deep_dream(model, torch.zeros(1, 3, 16, 16), ["unused"], progress=False)


def test_cli_writes_the_dream_at_the_working_size(photo, tmp_path, capsys):
    out = tmp_path / "dream.png"
    args = ["--model", "resnet18", "--layer", "layer1,layer2", "--size", "40", "--octaves", "2", "--steps", "2"]
    assert main(["dream", str(photo), *args, "--output", str(out)]) == 0
    with Image.open(out) as written:
        assert written.size == (40, 32) and written.mode == "RGB"  # the 80×64 photo, longer side 40
    captured = capsys.readouterr()
    assert str(out) in captured.out and "random weights" in captured.err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["{photo}", "--model", "resnet18", "--layer", "layer2,layer5"], "has no module 'layer5'. Did you mean: layer"),
        (["{bad}", "--model", "resnet18"], "bad.jpg"),
        (["{photo}", "--model", "resnet18", "--steps", "0"], "steps=0"),
        (["{photo}", "--model", "resnett18"], "unknown model 'resnett18'"),
        (["{photo}", "--model", "lenet5_modern", "--layer", "c1"], "cannot take a 13×16 input (LeNet-5 needs"),
    ],
)
def test_cli_mistakes_are_one_line(args, expected, photo, tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    assert main(["dream", *(a.format(photo=photo, bad=bad) for a in args), "--output", str(tmp_path / "d.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and expected in err and err.count("\n") == 1, err
    assert not (tmp_path / "d.png").exists()
