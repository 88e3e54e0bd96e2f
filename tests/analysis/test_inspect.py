"""``vr inspect``: hooked feature maps, first-layer filters, hand-made kernels, Grad-CAM and the CLI (no network)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from vision_research.analysis import inspect
from vision_research.cli import main
from vision_research.models import create_model


@pytest.mark.parametrize(
    ("name", "kwargs", "size"), [("lenet5_modern", {}, 32), ("resnet18", {"width_mult": 0.25}, 64)]
)
def test_feature_maps_are_the_stage_outputs(name, kwargs, size, tmp_path):
    torch.manual_seed(0)
    model = create_model(name, **kwargs).eval()
    x = torch.randn(2, model.default_cfg["input_size"][0], size, size)
    maps = inspect.feature_maps(model, x, count=4096)
    with torch.no_grad():
        stages = model.forward_features(x)
    assert list(maps) == inspect.stage_layers(model)
    for captured, stage in zip(maps.values(), stages, strict=True):
        torch.testing.assert_close(captured, stage[0])
    few = inspect.feature_maps(model, x, count=3)
    assert all(m.shape[0] == 3 for m in few.values())
    path = inspect.save_figure(inspect.plot_feature_maps(few), tmp_path / "maps.png")
    assert path.stat().st_size > 0


def test_first_layer_filters_and_the_grid(tmp_path):
    model = create_model("resnet18", width_mult=0.25)
    kernels = inspect.first_layer_filters(model)
    assert kernels.shape == model.conv1.weight.shape
    assert torch.allclose(kernels.amin(dim=(1, 2, 3)), torch.zeros(len(kernels)))
    assert torch.allclose(kernels.amax(dim=(1, 2, 3)), torch.ones(len(kernels)))
    figure = inspect.plot_filters(kernels, torch.rand(20, 30))
    assert len(figure.axes) == model.conv1.out_channels + 1 + len(inspect.HANDMADE_KERNELS)
    assert inspect.save_figure(figure, tmp_path / "filters.png").stat().st_size > 0


def test_vertical_edge_kernel_answers_only_along_the_edge():
    image = torch.zeros(20, 30)
    image[:, 12:] = 1.0  # one vertical edge between columns 11 and 12
    response = inspect.handmade_filters(image)["vertical edge"].abs()
    columns = response.sum(dim=0).nonzero().flatten().tolist()
    assert columns == [11, 12]
    assert inspect.handmade_filters(image)["horizontal edge"].abs().max() == 0


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def squares(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """Noise images 32×32; class 1 has a bright 8×8 square at a random place (returned), class 0 none."""
    images = 0.2 * torch.rand(count, 1, 32, 32, generator=generator)
    labels = torch.randint(0, 2, (count,), generator=generator)
    corners = torch.randint(0, 24, (count, 2), generator=generator).tolist()
    for image, label, (top, left) in zip(images, labels, corners, strict=True):
        if label:
            image[:, top : top + 8, left : left + 8] = 1.0
    return images, labels, corners


def test_grad_cam_highlights_the_square():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = TinyNet()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        images, labels, _ = squares(32, generator)
        loss = nn.functional.cross_entropy(model(images), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    images, labels, corners = squares(64, generator)
    with torch.no_grad():
        assert (model(images).argmax(1) == labels).float().mean() > 0.9
    ratios = []
    for image, label, (top, left) in zip(images, labels, corners, strict=True):
        if label and len(ratios) < 8:
            heat, index = inspect.grad_cam(model, image[None], "features.3", class_index=1)
            inside = np.zeros_like(heat, dtype=bool)
            inside[top : top + 8, left : left + 8] = True
            ratios.append(heat[inside].mean() / max(heat[~inside].mean(), 1e-6))
            assert index == 1 and heat.shape == (32, 32)
    assert len(ratios) == 8 and min(ratios) > 2, ratios  # mean CAM inside the square > 2× outside


def test_cli_cam_writes_the_png(photo, tmp_path, capsys):
    out = tmp_path / "cam.png"
    assert main(["inspect", "cam", str(photo), "--model", "resnet18", "--class-index", "3", "--output", str(out)]) == 0
    assert out.stat().st_size > 0 and str(out) in capsys.readouterr().out


def test_cli_feature_maps_and_filters(photo, tmp_path):
    maps, filters = tmp_path / "maps.png", tmp_path / "filters.png"
    args = ["--model", "lenet5_modern", "--layers", "c1,s2", "--count", "4", "--output", str(maps)]
    assert main(["inspect", "feature-maps", str(photo), *args]) == 0
    args = ["--model", "lenet5_modern", "--image", str(photo), "--output", str(filters)]
    assert main(["inspect", "filters", *args]) == 0
    assert maps.stat().st_size > 0 and filters.stat().st_size > 0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["cam", "{photo}", "--model", "resnet18", "--target-layer", "layer5"], "Did you mean: layer4"),
        (["feature-maps", "{photo}", "--model", "resnet18", "--layers", "layer1,nothing"], "stages are: layer1"),
        (["cam", "{bad}", "--model", "resnet18"], "bad.jpg"),
        (["cam", "{photo}"], "exactly one of --model NAME and --ckpt-path PATH"),
        (["filters", "--model", "resnet18", "--ckpt-path", "x.ckpt"], "exactly one of"),
    ],
)
def test_cli_mistakes_are_one_line(args, expected, photo, tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    assert main(["inspect", *(a.format(photo=photo, bad=bad) for a in args)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and expected in err and err.count("\n") == 1


def test_cli_help(capsys):
    for args in (["inspect", "--help"], ["inspect", "cam", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 0
    assert "--target-layer" in capsys.readouterr().out


def test_with_a_runs_checkpoint_the_pictures_also_go_to_its_tensorboard(photo, tmp_path):
    from hydra import compose, initialize_config_dir
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from vision_research.config_tree import config_dir
    from vision_research.train import train

    overrides = ["data=digits", "model=lenet5_modern", "trainer.max_epochs=1", "+trainer.limit_train_batches=2"]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "callbacks.progress_bar=none", "test_after_fit=false"])
    run = tmp_path / "run"
    train(cfg, run)
    ckpt = str(run / "checkpoints" / "last.ckpt")
    assert main(["inspect", "filters", "--ckpt-path", ckpt, "--output", str(tmp_path / "filters.png")]) == 0
    maps = str(tmp_path / "maps.png")
    assert main(["inspect", "feature-maps", str(photo), "--ckpt-path", ckpt, "--output", maps]) == 0
    events = EventAccumulator(str(run), size_guidance={"images": 0}).Reload()
    assert {"inspect/filters", "inspect/feature-maps"} <= set(events.Tags()["images"])
    assert [image.step for image in events.Images("inspect/filters")] == [2]  # the checkpoint's global step
