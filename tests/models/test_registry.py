"""Model registry: registration, listing, creation, helpful errors, and the timm adapter's contract."""

import pytest
import torch
from torch import nn

from vision_research.errors import ConfigError
from vision_research.models import Backbone, create_model, list_models, model_options, register_model
from vision_research.models.base import default_cfg, feature_info
from vision_research.models.registry import MODELS, Variant, register_variants


class TinyNet(Backbone):
    def __init__(self, num_classes: int = 4, in_chans: int = 3, width: int = 8) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = nn.Conv2d(in_chans, width, 3, stride=2, padding=1)
        self.fc = nn.Linear(width, num_classes)
        self.feature_info = [feature_info(width, 2, "stem")]
        self.default_cfg = default_cfg((in_chans, 16, 16), (0.5,) * 3, (0.5,) * 3, num_classes, "stem", "fc")

    def forward_features(self, x):
        return [self.stem(x)]

    def forward_head(self, features):
        return self.fc(features[-1].mean((2, 3)))

    def reset_classifier(self, num_classes):
        self.fc = nn.Linear(self.fc.in_features, num_classes)


@pytest.fixture
def tiny_registered():
    def tiny_test_net(num_classes: int = 4, in_chans: int = 3, width: int = 8) -> TinyNet:
        return TinyNet(num_classes, in_chans, width)

    register_model(tiny_test_net)
    yield "tiny_test_net"
    MODELS._entries.pop("tiny_test_net")


def test_register_create_and_list(tiny_registered):
    assert tiny_registered in list_models()
    assert list_models("tiny_*") == [tiny_registered]
    model = create_model(tiny_registered, num_classes=7, width=4)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 7)
    assert model_options(tiny_registered) == {"num_classes": 4, "in_chans": 3, "width": 8}
    assert create_model(tiny_registered).num_classes == 4  # the model's own default


def test_registering_a_name_twice_is_an_error(tiny_registered):
    def tiny_test_net(num_classes: int = 1) -> TinyNet:
        return TinyNet(num_classes)

    with pytest.raises(ConfigError, match="registered twice"):
        register_model(tiny_test_net)


def test_builtin_models_are_registered():
    assert {"lenet5", "lenet5_modern", "fashion_mnist_cnn"} <= set(list_models())


def test_unknown_model_lists_close_matches():
    with pytest.raises(ConfigError, match=r"unknown model 'lenet'.*lenet5"):
        create_model("lenet")


def test_unknown_option_names_the_option_and_suggests():
    with pytest.raises(ConfigError, match=r"no option 'c3table' \(did you mean c3_table\?\)"):
        create_model("lenet5", c3table=False)


def test_timm_adapter_honours_the_contract():
    model = create_model("timm:resnet18", num_classes=5, in_chans=1).eval()
    x = torch.randn(2, 1, 64, 64)
    features = model.forward_features(x)
    assert len(features) == len(model.feature_info)
    for fmap, info in zip(features, model.feature_info, strict=True):
        assert fmap.shape[1] == info["num_chs"]
        assert fmap.shape[-1] == 64 // info["reduction"]
    torch.testing.assert_close(model.forward_head(features), model(x))
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)
    assert model.default_cfg["input_size"] == (1, 224, 224)
    assert "timm:resnet18" in list_models("timm:resnet1*")


def test_timm_unknown_name_suggests():
    with pytest.raises(ConfigError, match=r"unknown timm model 'resnet181'.*resnet18"):
        create_model("timm:resnet181")


def test_a_variant_declared_as_data_takes_its_options_from_the_constructor():
    register_variants(TinyNet, {"tiny_variant_net": Variant({"width": 2}, "TinyNet, 2 maps.", {"num_classes": 9})})
    try:
        # The constructor's options but the fixed architecture, with the variant's defaults; the docstring is its line.
        assert model_options("tiny_variant_net") == {"num_classes": 9, "in_chans": 3}
        model = create_model("tiny_variant_net", in_chans=1)
        assert (model.num_classes, model.stem.in_channels, model.stem.out_channels) == (9, 1, 2)
        assert MODELS.get("tiny_variant_net").__doc__ == "TinyNet, 2 maps."
        with pytest.raises(ConfigError, match="has no option 'width'"):
            create_model("tiny_variant_net", width=4)  # fixed by the architecture
    finally:
        MODELS._entries.pop("tiny_variant_net")
    with pytest.raises(TypeError, match=r"variant bad_net: \['depth'\] are not options of TinyNet"):
        register_variants(TinyNet, {"bad_net": Variant({}, "", {"depth": 3})})
