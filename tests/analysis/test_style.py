"""``vr style``: the Gram matrix and the losses against hand computations, VGG-19's layer names, a few steps of style
transfer lowering the loss, and the CLI's PNG and one-line errors (random weights, no network)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from vision_research.analysis import inspect
from vision_research.analysis.style import (
    StyleFeatures,
    StyleTransferLoss,
    content_loss,
    gram_matrix,
    style_loss,
    style_transfer,
    total_variation,
    vgg_layer_names,
)
from vision_research.cli import main
from vision_research.errors import ConfigError
from vision_research.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models (conftest.py)


@pytest.fixture(scope="module")
def vgg19():
    torch.manual_seed(0)
    return create_model("vgg19")


@pytest.fixture
def pictures(tmp_path):
    """A 48×32 content picture (a red square on grey) and a 32×32 striped style picture."""
    content = np.full((32, 48, 3), 128, np.uint8)
    content[8:24, 12:28] = (220, 30, 30)
    style = np.zeros((32, 32, 3), np.uint8)
    style[:, ::4] = (30, 30, 220)
    style[::6, :] = (240, 240, 40)
    paths = tmp_path / "content.png", tmp_path / "style.png"
    for path, pixels in zip(paths, (content, style), strict=True):
        Image.fromarray(pixels).save(path)
    return paths


def raw_gram(features: np.ndarray) -> np.ndarray:
    """G_ij = Σ_k F_ik F_jk over the positions k, one image [C, H, W], by loops."""
    c = features.shape[0]
    flat = features.reshape(c, -1)
    gram = np.zeros((c, c))
    for i in range(c):
        for j in range(c):
            for k in range(flat.shape[1]):
                gram[i, j] += flat[i, k] * flat[j, k]
    return gram


def test_gram_matrix_by_hand():
    features = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    gram = gram_matrix(features)
    assert gram.shape == (2, 3, 3)
    for n in range(2):
        np.testing.assert_allclose(gram[n].numpy(), raw_gram(features[n].numpy()) / (3 * 4 * 5), rtol=1e-12)


def test_content_loss_by_hand():
    generated, content = torch.randn(2, 1, 3, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    total = 0.0
    for index in np.ndindex(*generated.shape):
        total += (generated[index].item() - content[index].item()) ** 2
    assert content_loss(generated, content).item() == pytest.approx(total / 2, rel=1e-12)


def test_style_loss_is_gatys_eq_4_and_5_by_hand():
    generator = torch.Generator().manual_seed(2)
    shapes = [(1, 3, 4, 4), (1, 5, 2, 3)]  # two layers of N_l maps of M_l = H·W positions
    generated = [torch.randn(shape, dtype=torch.float64, generator=generator) for shape in shapes]
    style = [torch.randn(shape, dtype=torch.float64, generator=generator) for shape in shapes]
    per_layer = []
    for g, a in zip(generated, style, strict=True):
        n, m = g.shape[1], g.shape[2] * g.shape[3]
        difference = raw_gram(g[0].numpy()) - raw_gram(a[0].numpy())
        per_layer.append(sum(difference[i, j] ** 2 for i in range(n) for j in range(n)) / (4 * n**2 * m**2))
    grams = [gram_matrix(f) for f in generated], [gram_matrix(f) for f in style]
    assert style_loss(*grams).item() == pytest.approx(sum(per_layer) / 2, rel=1e-12)  # w_l = 1/L
    weighted = style_loss(*grams, weights=[0.25, 3.0]).item()
    assert weighted == pytest.approx(0.25 * per_layer[0] + 3.0 * per_layer[1], rel=1e-12)


def test_total_variation_by_hand():
    image = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    x = image.numpy()
    total = 0.0
    for n, c, i, j in np.ndindex(*x.shape):
        if i + 1 < x.shape[2]:
            total += abs(x[n, c, i + 1, j] - x[n, c, i, j])
        if j + 1 < x.shape[3]:
            total += abs(x[n, c, i, j + 1] - x[n, c, i, j])
    assert total_variation(image).item() == pytest.approx(total, rel=1e-12)


def test_vgg19_layers_are_the_papers_relu_outputs(vgg19):
    names = vgg_layer_names(vgg19.features)
    assert len(names) == 16 and list(names)[:3] == ["conv1_1", "conv1_2", "conv2_1"]
    # torchvision's VGG-19 indices: conv1_1 = features.0, its ReLU features.1, ... conv5_2 = features.30 → 31.
    expected = {"conv1_1": 1, "conv2_1": 6, "conv3_1": 11, "conv4_1": 20, "conv4_2": 22, "conv5_1": 29, "conv5_2": 31}
    assert {name: names[name] for name in expected} == expected
    assert all(isinstance(vgg19.features[index], nn.ReLU) for index in names.values())

    features = StyleFeatures(vgg19)
    assert len(features.body) == 32  # cut after conv5_2's ReLU
    pools = [m for m in features.body if isinstance(m, nn.AvgPool2d | nn.MaxPool2d)]
    assert len(pools) == 4 and all(isinstance(m, nn.AvgPool2d) for m in pools)  # the paper's average pooling
    assert isinstance(vgg19.features[4], nn.MaxPool2d)  # the model itself keeps its max-pools
    style_maps, content_maps = features(torch.randn(1, 3, 32, 32))
    assert [tuple(m.shape[1:]) for m in style_maps] == [
        (64, 32, 32),
        (128, 16, 16),
        (256, 8, 8),
        (512, 4, 4),
        (512, 2, 2),
    ]
    assert content_maps.shape == (1, 512, 2, 2) and (content_maps >= 0).all()  # a ReLU output
    kept = [m for m in StyleFeatures(vgg19, pooling="max").body if isinstance(m, nn.AvgPool2d | nn.MaxPool2d)]
    assert len(kept) == 4 and all(isinstance(m, nn.MaxPool2d) for m in kept)
    with pytest.raises(ConfigError, match=r"unknown VGG layer 'conv6_2'\. Did you mean: conv5_2"):
        StyleFeatures(vgg19, content_layer="conv6_2")
    with pytest.raises(ConfigError, match="VGG cannot take a 8×8 input"):  # conv5_2 would be 0×0
        features(torch.randn(1, 3, 8, 8))


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_a_few_steps_lower_the_total_loss(optimizer, vgg19):
    spec = inspect.InputSpec(3, (32, 32), vgg19.default_cfg["mean"], vgg19.default_cfg["std"])
    bounds = inspect.pixel_bounds(spec)
    generator = torch.Generator().manual_seed(0)
    content, style = (torch.randn(1, 3, 32, 32, generator=generator).clamp(*bounds) for _ in range(2))
    loss = StyleTransferLoss(StyleFeatures(vgg19), content, style, style_weight=1e6, tv_weight=1e-6)
    before = {name: term.item() for name, term in loss(content).items()}
    result = style_transfer(loss, content, steps=3, optimizer=optimizer, bounds=bounds, progress=False)
    after = {name: term.item() for name, term in loss(result).items()}
    assert after["total"] < 0.8 * before["total"], (before, after)
    assert after["style"] < before["style"] and before["content"] == 0 < after["content"]
    assert (result >= bounds[0] - 1e-6).all() and (result <= bounds[1] + 1e-6).all()


def test_other_backbones_use_their_stages():
    torch.manual_seed(0)
    model = create_model("resnet18", width_mult=0.25)
    features = StyleFeatures(model)
    assert features.style_layers == ["layer1", "layer2", "layer3", "layer4"] and features.content_layer == "layer4"
    x = torch.randn(1, 3, 64, 64)
    style_maps, content_maps = features(x)
    for captured, stage in zip(style_maps, model.forward_features(x), strict=True):
        torch.testing.assert_close(captured, stage)
    assert content_maps is style_maps[-1] and not any(p.requires_grad for p in model.parameters())  # frozen


def test_cli_writes_the_result(pictures, tmp_path, capsys):
    out = tmp_path / "out" / "result.png"
    args = ["--size", "32", "--steps", "2", "--output", str(out)]
    assert main(["style", *map(str, pictures), *args]) == 0
    with Image.open(out) as written:
        assert written.size == (32, 21) and written.mode == "RGB"  # the 48×32 content picture, longer side 32
    captured = capsys.readouterr()
    assert str(out) in captured.out and "random weights" in captured.err
    args = ["--model", "resnet18", "--optimizer", "adam", "--init", "noise", "--size", "32", "--steps", "2"]
    assert main(["style", *map(str, pictures), *args, "--output", str(out)]) == 0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model", "resnett18"], "unknown model 'resnett18'"),
        (["--style-layers", "conv1_1,relu2_1"], "unknown VGG layer 'relu2_1'. Known: conv1_1, conv1_2, conv2_1"),
        (["--model", "resnet18", "--style-layers", "layer1,layer9"], "has no module 'layer9'"),
        (["--model", "resnet18", "--pooling", "avg"], "pooling applies to VGG models only"),
        (["--model", "resnet18", "--optimizer", "sgd"], "unknown optimizer 'sgd'. Known: adam, lbfgs"),
        (["--model", "resnet18", "--init", "zeros"], "unknown init 'zeros'. Known: content, noise"),
        (["--model", "resnet18", "--steps", "0"], "steps=0"),
    ],
)
def test_cli_mistakes_are_one_line(args, expected, pictures, tmp_path, capsys):
    out = tmp_path / "result.png"
    assert main(["style", *map(str, pictures), "--size", "16", "--steps", "1", *args, "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and expected in err and err.count("\n") == 1, err
    assert not out.exists()


@pytest.mark.parametrize("which", [0, 1])
def test_cli_non_image_is_one_line(which, pictures, tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    paths = [str(p) for p in pictures]
    paths[which] = str(bad)
    assert main(["style", *paths, "--model", "resnet18", "--size", "16", "--output", str(tmp_path / "r.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "bad.jpg" in err and err.count("\n") == 1, err
