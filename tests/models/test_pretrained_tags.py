"""``torchvision:`` / ``timm:`` tags: read from torch's and Hugging Face's caches (filled here by hand with randomly
initialised reference weights), mapped onto our models, one-line errors when absent or unknown. No network: the
download function is replaced by one that fails, and the Hugging Face hub is offline."""

import os
import urllib.error
from pathlib import Path
from urllib.parse import urlparse

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from vision_research.errors import ConfigError, DataError
from vision_research.models import create_model
from vision_research.models.hub import fetch_pretrained, pretrained_class_names
from vision_research.tasks.classification import ImageClassifier

TV_TAG = "torchvision:ResNet18_Weights.IMAGENET1K_V1"
TIMM_TAG = "timm:resnet18.a1_in1k"


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path):
    """Empty caches of our own and a download that fails at once."""

    def refuse(url, *args, **kwargs):
        raise urllib.error.URLError(f"no network in tests ({url})")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)


def tv_checkpoints() -> Path:
    return Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints"


def tv_file_name() -> str:
    return os.path.basename(urlparse(torchvision.models.get_weight(TV_TAG.partition(":")[2]).url).path)


@pytest.fixture
def torchvision_cached() -> torch.nn.Module:
    """torchvision's resnet18 (seeded random weights) saved where its hub would have downloaded them."""
    torch.manual_seed(0)
    reference = torchvision.models.resnet18().eval()
    tv_checkpoints().mkdir(parents=True)
    torch.save(reference.state_dict(), tv_checkpoints() / tv_file_name())
    return reference


def assert_same_logits(ours: torch.nn.Module, reference: torch.nn.Module) -> None:
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), reference.eval()(x))


def test_torchvision_tag_loads_the_cached_file(torchvision_cached):
    assert tv_file_name() == "resnet18-f37072fd.pth"
    assert_same_logits(create_model("resnet18", pretrained=TV_TAG), torchvision_cached)


def test_torchvision_tag_not_cached_offline_is_one_line(capsys):
    with pytest.raises(DataError) as info:
        create_model("resnet18", pretrained=TV_TAG)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    assert tv_file_name() in message and str(tv_checkpoints()) in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert info.value.__suppress_context__


def test_unknown_torchvision_weights_suggest_close_names():
    with pytest.raises(ConfigError, match=r"did you mean ResNet50_Weights\.IMAGENET1K_V1, IMAGENET1K_V2") as info:
        fetch_pretrained("torchvision:ResNet50_Weights.IMAGENET1K_V3")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"ResNet50_Weights\.IMAGENET1K_V1"):
        fetch_pretrained("torchvision:resnet50")


def test_hugging_face_cache_feeds_timm_tag():
    torch.manual_seed(0)
    reference = timm.create_model("resnet18").eval()
    repo = Path(os.environ["HF_HOME"]) / "hub" / "models--timm--resnet18.a1_in1k"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    save_file(reference.state_dict(), str(repo / "snapshots" / commit / "model.safetensors"))
    state, source, where = fetch_pretrained(TIMM_TAG)
    assert source == "timm" and "timm/resnet18.a1_in1k" in where
    assert_same_logits(create_model("resnet18", pretrained=TIMM_TAG), reference)


def test_timm_tag_not_cached_offline_is_one_line():
    with pytest.raises(DataError) as info:
        create_model("resnet18", pretrained=TIMM_TAG)
    message = str(info.value)
    assert "\n" not in message and "timm/resnet18.a1_in1k" in message
    assert str(Path(os.environ["HF_HOME"]) / "hub") in message and "model.pretrained_source=timm" in message


def test_unknown_timm_tag_suggests_close_names():
    with pytest.raises(ConfigError, match=r"did you mean resnet18\.a1_in1k"):
        fetch_pretrained("timm:resnet18.a1_in1kk")


def test_class_names_of_published_weights():
    names = pretrained_class_names(TV_TAG)
    assert len(names) == 1000 and names[0] == "tench"
    assert pretrained_class_names("weights.pt") is None


def test_task_loads_the_backbone_and_reinitialises_the_head(torchvision_cached, capsys):
    task = ImageClassifier("resnet18", num_classes=5, in_chans=3, pretrained=TV_TAG)
    task.setup("fit")
    assert "pretrained weights from torchvision:ResNet18_Weights.IMAGENET1K_V1" in capsys.readouterr().out
    ours = dict(task.model.named_parameters())
    reference = torchvision_cached.state_dict()
    torch.testing.assert_close(ours["layer4.1.conv2.weight"], reference["layer4.1.conv2.weight"])
    assert ours["fc.weight"].shape == (5, 512)
    assert not torch.equal(ours["fc.weight"], reference["fc.weight"][:5])


@pytest.mark.parametrize(("num_classes", "expected"), [(1000, "tench"), (5, None)])
def test_build_task_takes_the_class_names_of_the_weights(num_classes, expected):
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from vision_research.build import build_task

    cfg = OmegaConf.create({"task": {"name": "classification"}, "model": {"name": "lenet5", "pretrained": TV_TAG}})
    data = SimpleNamespace(num_classes=num_classes, in_chans=1, class_names=[])
    names = build_task(cfg, data).hparams.class_names
    assert (names[0] if names else None) == expected
