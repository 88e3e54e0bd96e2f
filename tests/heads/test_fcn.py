"""FCN head: exact output sizes on any backbone, bilinear initialisation, zero-initialised skips."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vision_research.errors import ConfigError
from vision_research.heads.fcn import BilinearUpsample, FCNHead
from vision_research.models import create_model


@pytest.mark.parametrize("backbone", ["resnet18", "vgg11", "mobilenet_v2", "timm:resnet18"])
@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
def test_output_has_the_input_size_for_odd_sizes(backbone, variant):
    model = create_model(backbone, num_classes=10).eval()
    head = FCNHead(model.feature_info, num_classes=5, variant=variant, hidden_channels=32).eval()
    for size in [(65, 97), (33, 47), (128, 96)]:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            out = head(model.forward_features(x), size)
        assert out.shape == (1, 5, *size)


@pytest.mark.parametrize("factor", [2, 8, 32])
def test_bilinear_initialisation_equals_interpolate(factor):
    rows, cols = torch.meshgrid(torch.linspace(0, 3, 9), torch.linspace(0, 2, 11), indexing="ij")
    smooth = torch.stack([torch.sin(rows) * torch.cos(cols), rows * 0.3 + cols**2 * 0.1])[None]  # [1, 2, 9, 11]
    size = (9 * factor, 11 * factor)
    ours = BilinearUpsample(2, factor, trainable=False)(smooth, size)
    reference = F.interpolate(smooth, size=size, mode="bilinear", align_corners=False)
    inner = (..., slice(factor, -factor), slice(factor, -factor))  # the border extrapolates differently
    torch.testing.assert_close(ours[inner], reference[inner], atol=1e-5, rtol=0)


def test_paper_initialisation_and_trainable_flags():
    info = create_model("resnet18").feature_info
    head = FCNHead(info, 4, variant="8s", learn_fusion_upsampling=True, learn_final_upsampling=False)
    assert all((skip.weight == 0).all() and (skip.bias == 0).all() for skip in head.skip_scores)
    assert all(up.deconv.weight.requires_grad for up in head.fusion_upsamplers)
    assert not head.final_upsampler.deconv.weight.requires_grad
    frozen = FCNHead(info, 4, variant="16s", learn_fusion_upsampling=False)
    assert not any(p.requires_grad for up in frozen.fusion_upsamplers for p in up.parameters())
    # Skips start at zero but learn: a training step moves them.
    features = [torch.randn(2, f["num_chs"], 64 // f["reduction"] or 1, 64 // f["reduction"] or 1) for f in info]
    loss = head(features, (64, 64)).square().mean()
    loss.backward()
    assert all(skip.weight.grad.abs().sum() > 0 for skip in head.skip_scores)


def test_strides_are_read_from_feature_info():
    info = create_model("resnet18").feature_info
    head = FCNHead(info, 3, strides=(32, 8))
    assert [info[i]["reduction"] for i in head.stages] == [32, 8]
    assert head.fusion_upsamplers[0].factor == 4
    with pytest.raises(ConfigError, match=r"stride 64; this backbone has strides \[4, 8, 16, 32\]"):
        FCNHead(info, 3, strides=(64, 32))
    with pytest.raises(ConfigError, match="variant must be one of 32s, 16s, 8s"):
        FCNHead(info, 3, variant="4s")
    with pytest.raises(ConfigError, match="coarse to fine"):
        FCNHead(info, 3, strides=(8, 32))
