"""Feature-pyramid necks of the anchor head: output strides and widths, FPN's top-down sums against
torchvision's FeaturePyramidNetwork written out, PANet's bottom-up path, one-line errors."""

import pytest
import torch
from torch.nn import functional as F

from vision_research.errors import ConfigError
from vision_research.heads.neck import FeaturePyramidNeck, build_neck
from vision_research.models import create_model
from vision_research.tasks.detection import MultiScaleYoloHead

CHANNELS, STRIDES = [16, 32, 64], [8, 16, 32]


def _features(size: int = 64) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [
        torch.randn(2, c, size // s, size // s, generator=generator) for c, s in zip(CHANNELS, STRIDES, strict=False)
    ]


@pytest.mark.parametrize("kind", ["fpn", "pan"])
def test_every_level_keeps_its_stride_and_gets_the_necks_width(kind):
    neck = build_neck(kind, CHANNELS, STRIDES, 24)
    outputs = neck(_features())
    assert [tuple(x.shape) for x in outputs] == [(2, 24, 8, 8), (2, 24, 4, 4), (2, 24, 2, 2)]


def test_fpn_is_lateral_projections_plus_the_upsampled_coarser_level():
    torch.manual_seed(0)
    neck = FeaturePyramidNeck(CHANNELS, STRIDES, 24, bottom_up=False).eval()
    features = _features()
    inner, layer = neck.top_down.inner_blocks, neck.top_down.layer_blocks
    top = inner[2](features[2])
    middle = inner[1](features[1]) + F.interpolate(top, size=(4, 4), mode="nearest")
    fine = inner[0](features[0]) + F.interpolate(middle, size=(8, 8), mode="nearest")
    expected = [layer[0](fine), layer[1](middle), layer[2](top)]
    for got, want in zip(neck(features), expected, strict=True):
        torch.testing.assert_close(got, want)


def test_pan_carries_the_finest_level_back_up():
    torch.manual_seed(0)
    neck = FeaturePyramidNeck(CHANNELS, STRIDES, 24, bottom_up=True).eval()
    features = _features()
    fpn = list(neck.top_down({str(i): x for i, x in enumerate(features)}).values())
    second = neck.merge[0](neck.downsample[0](fpn[0]) + fpn[1])
    third = neck.merge[1](neck.downsample[1](second) + fpn[2])
    for got, want in zip(neck(features), [fpn[0], second, third], strict=True):
        torch.testing.assert_close(got, want)
    # The coarsest output depends on the finest input (not so without the bottom-up path).
    fine = features[0].clone().requires_grad_()
    neck([fine, *features[1:]])[2].sum().backward()
    assert fine.grad.abs().sum() > 0


def test_the_anchor_head_reads_the_neck_on_a_backbone_through_feature_info():
    backbone = create_model("resnet18", width_mult=0.25)
    info = backbone.feature_info[1:]  # strides 8, 16, 32
    anchors = [[(10, 10)], [(30, 30)], [(60, 60)]]
    head = MultiScaleYoloHead(info, 3, anchors, hidden_channels=16, neck="pan", neck_channels=24)
    features = backbone.forward_features(torch.randn(1, 3, 64, 64))[1:]
    assert [tuple(r.shape) for r in head(features)] == [(1, 1, 8, 8, 8), (1, 1, 4, 4, 8), (1, 1, 2, 2, 8)]
    assert head.strides == [8, 16, 32]


def test_bad_necks_are_one_line_errors():
    with pytest.raises(ConfigError, match="task.head.neck must be one of none, fpn, pan; got 'bifpn'"):
        build_neck("bifpn", CHANNELS, STRIDES, 24)
    with pytest.raises(ConfigError, match=r"neck=pan needs each stride twice the one before; got strides \[8, 32\]"):
        build_neck("pan", [16, 64], [8, 32], 24)
    assert build_neck("none", CHANNELS, STRIDES, 24) is None
