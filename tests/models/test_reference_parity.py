"""Every architecture torchvision or timm also has: their randomly initialised weights, saved and ported
through ``load_pretrained``, give their eval-mode logits (the family files test the details; this is the
acceptance sweep over all names, on one small image)."""

import pytest
import timm
import torch
import torchvision

from tests.models.contract import assert_same_outputs
from vision_research.models import create_model

TORCHVISION = [
    "alexnet",
    *(f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")),
    *(f"resnet{d}" for d in (18, 34, 50, 101, 152)),
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    *(f"densenet{d}" for d in (121, 161, 169, 201)),
    "mobilenet_v2",
    *(f"efficientnet_b{i}" for i in range(8)),
]
TIMM = {"seresnet50": "seresnet50", "xception": "legacy_xception"}


def reference_torchvision(name: str) -> torch.nn.Module:
    kwargs = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    return getattr(torchvision.models, name)(weights=None, **kwargs)


@pytest.mark.parametrize("name", [*TORCHVISION, "googlenet"])
def test_torchvision_weights_give_torchvision_logits(name):
    torch.manual_seed(0)
    options = {"aux_logits": False} if name == "googlenet" else {}
    size = 64 if name != "alexnet" else 96
    assert_same_outputs(create_model(name, **options), reference_torchvision(name), "torchvision", (1, 3, size, size))


@pytest.mark.parametrize("name", sorted(TIMM))
def test_timm_weights_give_timm_logits(name):
    torch.manual_seed(0)
    size = 96 if name == "xception" else 64
    reference = timm.create_model(TIMM[name], pretrained=False)
    assert_same_outputs(create_model(name), reference, "timm", (1, 3, size, size))
