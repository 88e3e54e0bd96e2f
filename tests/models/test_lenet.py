"""LeNet-5 (LeCun et al. 1998): shapes, hand-counted parameters, Table I and each special layer's formula."""

import pytest
import torch

from vision_research.models import count_parameters, create_model
from vision_research.models.lenet import (
    LENET5_C3_TABLE,
    ConnectionTableConv2d,
    RBFOutput,
    ScaledTanh,
    TrainableSubsampling,
)


def conv_params(in_maps: int, out_maps: int, k: int = 5) -> int:
    return out_maps * (in_maps * k * k + 1)


def test_lenet5_parameter_count_is_the_papers_60000():
    c1 = conv_params(1, 6)  # 156
    s2 = 6 * 2  # coefficient + bias per map
    c3 = 6 * (3 * 25 + 1) + 9 * (4 * 25 + 1) + 1 * (6 * 25 + 1)  # Table I: 1,516
    s4 = 16 * 2
    c5 = conv_params(16, 120)
    f6 = 84 * (120 + 1)
    assert c3 == 1516
    assert c1 + s2 + c3 + s4 + c5 + f6 == 60_000
    assert count_parameters(create_model("lenet5")) == 60_000


def test_lenet5_without_table_and_modern_counts():
    full_c3 = conv_params(6, 16)
    assert count_parameters(create_model("lenet5", c3_table=False)) == 60_000 - 1516 + full_c3 == 60_900
    modern = conv_params(1, 6) + full_c3 + conv_params(16, 120) + 84 * 121 + 10 * 85
    assert count_parameters(create_model("lenet5_modern")) == modern == 61_706


@pytest.mark.parametrize("name", ["lenet5", "lenet5_modern"])
def test_lenet5_shapes_32_28_14_10_5_1(name):
    model = create_model(name)
    sizes = {}
    for layer in ("c1", "s2", "c3", "s4", "c5"):
        getattr(model, layer).register_forward_hook(lambda m, i, o, layer=layer: sizes.__setitem__(layer, o.shape))
    logits = model(torch.randn(3, 1, 32, 32))
    assert {k: tuple(v[-3:]) for k, v in sizes.items()} == {
        "c1": (6, 28, 28),
        "s2": (6, 14, 14),
        "c3": (16, 10, 10),
        "s4": (16, 5, 5),
        "c5": (120, 1, 1),
    }
    assert logits.shape == (3, 10)
    features = model.forward_features(torch.randn(2, 1, 32, 32))
    assert [f.shape[1] for f in features] == [f["num_chs"] for f in model.feature_info]


def test_c3_table_connects_what_table_one_says():
    fan_in = [len(row) for row in LENET5_C3_TABLE]
    assert fan_in == [3] * 6 + [4] * 9 + [6]
    layer = ConnectionTableConv2d(6, LENET5_C3_TABLE, 5)
    x = torch.randn(1, 6, 14, 14)
    out = layer(x)
    for s2_map in range(6):
        bumped = x.clone()
        bumped[:, s2_map] += 1.0
        changed = (layer(bumped) - out).abs().flatten(2).amax(-1).squeeze(0) > 0
        expected = torch.tensor([s2_map in row for row in LENET5_C3_TABLE])
        assert torch.equal(changed, expected), f"S2 map {s2_map}"
    # Column 0 of Table I: C3 map 0 sees S2 maps 0, 1, 2; map 12 sees 0, 1, 3, 4.
    assert LENET5_C3_TABLE[0] == (0, 1, 2) and LENET5_C3_TABLE[12] == (0, 1, 3, 4)


def test_connection_table_conv_equals_masked_dense_conv():
    layer = ConnectionTableConv2d(6, LENET5_C3_TABLE, 5)
    x = torch.randn(2, 6, 14, 14)
    weight = layer.dense_weight()
    assert int((weight != 0).sum()) == 1500 and layer.weight.numel() == 1500
    torch.testing.assert_close(layer(x), torch.nn.functional.conv2d(x, weight, layer.bias))


def test_connection_table_rejects_out_of_range_rows():
    with pytest.raises(ValueError, match="row 0"):
        ConnectionTableConv2d(6, ((0, 7),), 5)


def test_scaled_tanh_is_a_times_tanh_of_s_a():
    a = torch.linspace(-3, 3, 13)
    assert torch.allclose(ScaledTanh()(a), 1.7159 * torch.tanh(2 / 3 * a))
    assert ScaledTanh()(torch.tensor(1.0)).item() == pytest.approx(1.0, abs=1e-3)  # f(1) ≈ 1 by design


def test_trainable_subsampling_is_mean_times_coefficient_plus_bias():
    layer = TrainableSubsampling(2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([2.0, -1.0]))
        layer.bias.copy_(torch.tensor([0.5, 1.0]))
    x = torch.arange(32, dtype=torch.float32).view(1, 2, 4, 4)
    out = layer(x)
    top_left = x[0, :, :2, :2].mean(dim=(1, 2))
    assert torch.allclose(out[0, :, 0, 0], top_left * torch.tensor([2.0, -1.0]) + torch.tensor([0.5, 1.0]))
    assert out.shape == (1, 2, 2, 2)


def test_rbf_output_is_minus_squared_distance_to_fixed_prototypes():
    rbf = RBFOutput(84, 10)
    assert set(rbf.prototypes.unique().tolist()) == {-1.0, 1.0}
    assert count_parameters(rbf) == 0
    x = torch.randn(4, 84)
    by_hand = -((x[:, None, :] - rbf.prototypes[None]) ** 2).sum(-1)
    torch.testing.assert_close(rbf(x), by_hand, rtol=1e-4, atol=1e-3)


def test_lenet5_head_requires_32x32_with_a_clear_message():
    with pytest.raises(ValueError, match="32×32"):
        create_model("lenet5")(torch.randn(1, 1, 28, 28))


def test_reset_classifier_and_options():
    model = create_model("lenet5_modern")
    model.reset_classifier(3)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)
    assert model.default_cfg["num_classes"] == 3
    with pytest.raises(ValueError, match="pooling"):
        create_model("lenet5", pooling="median")


def test_lenet5_gradients_reach_every_parameter():
    model = create_model("lenet5")
    model(torch.randn(4, 1, 32, 32)).logsumexp(1).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
