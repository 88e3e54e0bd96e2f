"""Loading local weights: same weights → same outputs, head re-initialised, in_chans adapted, clear errors."""

import pytest
import torch

from vision_research.errors import ConfigError, DataError
from vision_research.models import create_model, load_pretrained
from vision_research.models.weights import adapt_first_conv


def test_saved_weights_reproduce_outputs(tmp_path):
    source = create_model("lenet5").eval()
    path = tmp_path / "lenet5.pt"
    torch.save(source.state_dict(), path)
    target = create_model("lenet5", pretrained=path).eval()
    x = torch.randn(3, 1, 32, 32)
    torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


def test_lightning_checkpoint_with_model_prefix(tmp_path):
    source = create_model("lenet5_modern").eval()
    path = tmp_path / "run.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}, "epoch": 3}, path)
    target = create_model("lenet5_modern").eval()
    report = load_pretrained(target, path)
    assert len(report.mapped) == len(source.state_dict()) and not report.missing
    x = torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(target(x), source(x))


def test_other_class_count_reinitialises_only_the_head():
    source = create_model("lenet5_modern", num_classes=10)
    target = create_model("lenet5_modern", num_classes=3)
    report = load_pretrained(target, source.state_dict())
    assert sorted(report.reinitialised) == ["output.bias", "output.weight"]
    torch.testing.assert_close(target.c5[0].weight, source.c5[0].weight)
    assert target.output.weight.shape == (3, 84)


def test_other_in_chans_adapts_the_first_conv():
    source = create_model("lenet5_modern", in_chans=1)
    target = create_model("lenet5_modern", in_chans=3)
    report = load_pretrained(target, source.state_dict())
    assert report.adapted == ["c1.0.weight"]
    # The grey kernel tiled over the 3 channels, scaled by 1/3: a grey image seen as RGB gives the same map.
    torch.testing.assert_close(target.c1[0].weight, source.c1[0].weight.repeat(1, 3, 1, 1) / 3)


@pytest.mark.parametrize("in_chans", [1, 2, 5])
def test_first_conv_adaptation_equals_timm_for_rgb_sources(in_chans):
    from timm.models import adapt_input_conv

    rgb = torch.randn(8, 3, 3, 3)
    torch.testing.assert_close(adapt_first_conv(rgb, in_chans), adapt_input_conv(in_chans, rgb))


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found.*nothing is downloaded"):
        create_model("lenet5", pretrained=tmp_path / "nope.pt")


def test_corrupt_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="bad.pt"):
        create_model("lenet5", pretrained=bad)


def test_another_architecture_is_a_config_error():
    with pytest.raises(ConfigError, match="c5.0.weight"):
        load_pretrained(create_model("lenet5_modern"), {"c5.0.weight": torch.zeros(7, 16, 5, 5)})


def test_reference_weights_map_by_position_when_names_differ():
    source = create_model("lenet5_modern").eval()
    foreign = {f"features.{i}": t for i, t in enumerate(source.state_dict().values())}
    target = create_model("lenet5_modern").eval()
    report = load_pretrained(target, foreign, source="torchvision")
    assert len(report.mapped) == len(foreign)
    x = torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(target(x), source(x))


def test_position_mapping_checks_counts_and_shapes():
    tensors = list(create_model("lenet5_modern").state_dict().values())
    with pytest.raises(ConfigError, match="9 tensors, the model 10"):
        load_pretrained(create_model("lenet5_modern"), {f"t{i}": t for i, t in enumerate(tensors[:-1])}, "timm")
    swapped = tensors[2:4] + tensors[:2] + tensors[4:]
    with pytest.raises(ConfigError, match="by position.*layouts differ"):
        load_pretrained(create_model("lenet5_modern"), {f"t{i}": t for i, t in enumerate(swapped)}, "timm")
    with pytest.raises(ConfigError, match="source='keras'"):
        load_pretrained(create_model("lenet5_modern"), {}, "keras")
