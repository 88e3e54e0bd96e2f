"""YOLO heads: shapes on a real backbone, the paper's fc form, the confidence prior, one anchor set per stage, and
what the task asks of both alike (the stages they read, their decoding's geometry, their loss)."""

import math

import pytest
import torch

from vision_research.errors import ConfigError
from vision_research.models import create_model
from vision_research.tasks.detection import YOLOV3_ANCHORS, MultiScaleYoloHead, YoloAnchorHead, YoloV1Head

PRIOR_LOGIT = math.log(0.01 / 0.99)


@pytest.fixture(scope="module")
def resnet18():
    return create_model("resnet18").eval()


@pytest.mark.parametrize("size", [224, 300, 448])
def test_v1_head_gives_the_papers_7x7x30_on_resnet18_features(resnet18, size):
    head = YoloV1Head(resnet18.feature_info[-1]["num_chs"], num_classes=20, grid_size=7, num_boxes=2).eval()
    fc_head = YoloV1Head(512, 20, fc=True, hidden_channels=16).eval()
    with torch.no_grad():
        features = resnet18.forward_features(torch.randn(2, 3, size, size))[-1]
        assert head(features).shape == fc_head(features).shape == (2, 7, 7, 30)


def test_v1_head_fc_form_is_the_papers_two_fully_connected_layers():
    head = YoloV1Head(64, 3, grid_size=4, num_boxes=2, hidden_channels=8, fc=True, dropout=0.5)
    linears = [m for m in head.predict if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8 * 4 * 4, 4096), (4096, 4 * 4 * 13)]
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in head.predict)
    assert head(torch.randn(2, 64, 9, 5)).shape == (2, 4, 4, 13)
    # The confidence outputs start at logit(0.01), in every cell.
    bias = linears[-1].bias.view(16, 13)
    torch.testing.assert_close(bias[:, [4, 9]], torch.full((16, 2), PRIOR_LOGIT))


def test_confidence_biases_start_at_the_prior():
    v1 = YoloV1Head(16, 3, num_boxes=2, hidden_channels=8)
    torch.testing.assert_close(v1.predict.bias[[4, 9]], torch.full((2,), PRIOR_LOGIT))
    anchor = YoloAnchorHead(16, 3, [(10, 10), (20, 20)], stride=8, hidden_channels=8)
    torch.testing.assert_close(anchor.predict.bias.view(2, 8)[:, 4], torch.full((2,), PRIOR_LOGIT))


@pytest.mark.parametrize("size", [416, 300])
def test_multi_scale_head_on_resnet18_stages(resnet18, size):
    stages = resnet18.feature_info[1:]  # reductions 8, 16, 32
    head = MultiScaleYoloHead(stages, num_classes=5, anchors_per_scale=YOLOV3_ANCHORS, hidden_channels=32).eval()
    assert head.strides == [8, 16, 32] and [a.shape for a in head.anchors] == [(3, 2)] * 3
    with torch.no_grad():
        features = resnet18.forward_features(torch.randn(2, 3, size, size))[1:]
        raws = head(features)
    assert [r.shape for r in raws] == [(2, 3, f.shape[2], f.shape[3], 10) for f in features]
    assert raws[-1].shape[2] == math.ceil(size / 32)  # 13 for 416, 10 for 300


def test_multi_scale_head_needs_one_anchor_set_per_stage():
    with pytest.raises(ConfigError, match="2 anchor sets for 3 stages"):
        MultiScaleYoloHead([{"num_chs": 8, "reduction": r} for r in (8, 16, 32)], 2, YOLOV3_ANCHORS[:2])


def test_both_heads_read_their_stages_give_their_geometry_and_build_their_loss():
    backbone = create_model("resnet18", width_mult=0.25).eval()
    info = backbone.feature_info  # strides 4, 8, 16, 32
    v1 = YoloV1Head.from_backbone(info, 3, stage=-2, grid_size=4, hidden_channels=8).eval()
    anchors = [[[10.0, 12.0]], [[30.0, 20.0], [40.0, 50.0]]]
    multi = MultiScaleYoloHead.from_backbone(info, 3, strides=[16, 32], anchors=anchors, hidden_channels=8).eval()
    assert v1.stages == [2] and multi.stages == [2, 3]
    with torch.no_grad():
        features = backbone.forward_features(torch.randn(2, 3, 64, 64))
        torch.testing.assert_close(v1.read(features), v1(features[2]))
        for got, want in zip(multi.read(features), multi(features[2:]), strict=True):
            torch.testing.assert_close(got, want)
    assert v1.geometry() == {"num_boxes": 2}
    assert multi.geometry()["strides"] == [16, 32] and [a.tolist() for a in multi.geometry()["anchors"]] == anchors
    v1_loss = v1.build_loss(64, {"lambda_noobj": 0.25})
    assert (v1_loss.grid_size, v1_loss.num_boxes, v1_loss.image_size, v1_loss.lambda_noobj) == (4, 2, 64, 0.25)
    anchor_loss = multi.build_loss(64, {"box_loss": "ciou"})
    assert anchor_loss.strides == [16, 32] and anchor_loss.num_anchors == [1, 2] and anchor_loss.box_loss == "ciou"
    with pytest.raises(ConfigError, match="task.loss.box_loss=ciou is an option of the anchor head's loss"):
        v1.build_loss(64, {"box_loss": "ciou"})
