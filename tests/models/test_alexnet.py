"""AlexNet (Krizhevsky et al. 2012): the paper's shapes and counts, LRN against eq. 14-2, torchvision parity."""

import pytest
import torch
import torchvision
from torch import nn

from tests.models.contract import assert_feature_contract, assert_one_step_reduces_loss, assert_same_outputs
from vision_research.models import count_parameters, create_model
from vision_research.models.alexnet import GroupedLocalResponseNorm
from vision_research.models.convert import dense_to_conv
from vision_research.models.layers import LocalResponseNorm


def assert_same_logits_to_scale(ours: nn.Module, reference: nn.Module, input_size: tuple[int, ...]) -> None:
    """After ``assert_same_outputs`` (absolute 1e-4, loose for the small logits of random weights): 1e-5 of scale."""
    x = torch.randn(*input_size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, got = reference.eval()(x), ours.eval()(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


def lrn_by_hand(a: torch.Tensor, n: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    """Eq. 14-2 (Géron ch. 14) with explicit loops: b_i = a_i (k + α Σ_{j=max(0,i−n/2)}^{min(N−1,i+n/2)} a_j²)^−β."""
    channels = a.shape[1]
    b = torch.empty_like(a)
    for i in range(channels):
        total = torch.zeros_like(a[:, i])
        for j in range(max(0, i - n // 2), min(channels - 1, i + n // 2) + 1):
            total += a[:, j] ** 2
        b[:, i] = a[:, i] * (k + alpha * total) ** (-beta)
    return b


@pytest.mark.parametrize(
    ("n", "alpha", "beta", "k"),
    [(5, 1e-4, 0.75, 2.0), (5, 0.5, 0.75, 1.0), (3, 2.0, 0.5, 1.0)],  # the paper's constants; larger α
)
def test_lrn_equals_equation_14_2_including_channel_edges(n, alpha, beta, k):
    a = torch.randn(2, 7, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    got = LocalResponseNorm(n, alpha, beta, k)(a)
    torch.testing.assert_close(got, lrn_by_hand(a, n, alpha, beta, k), rtol=1e-12, atol=1e-12)
    # Channel 0 (an edge) sums a_0² + … + a_{n/2}² only; channel 3 (inside) the full window.
    edge = a[:, 0] * (k + alpha * (a[:, : n // 2 + 1] ** 2).sum(1)) ** (-beta)
    inside = a[:, 3] * (k + alpha * (a[:, 3 - n // 2 : 3 + n // 2 + 1] ** 2).sum(1)) ** (-beta)
    torch.testing.assert_close(got[:, 0], edge, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got[:, 3], inside, rtol=1e-12, atol=1e-12)


def test_lrn_uses_the_papers_alpha_where_torch_divides_it_by_n():
    a = torch.randn(1, 8, 2, 2, dtype=torch.float64) * 3
    ours = LocalResponseNorm(5, alpha=0.5, beta=0.75, k=1.0)(a)
    torch_same_alpha = nn.LocalResponseNorm(5, alpha=0.5, beta=0.75, k=1.0)(a)
    assert not torch.allclose(ours, torch_same_alpha)
    torch.testing.assert_close(ours, lrn_by_hand(a, 5, 0.5, 0.75, 1.0))
    torch.testing.assert_close(torch_same_alpha, lrn_by_hand(a, 5, 0.5 / 5, 0.75, 1.0))


def test_grouped_lrn_normalises_each_gpus_maps_separately():
    a = torch.randn(2, 8, 3, 3, dtype=torch.float64) * 3
    got = GroupedLocalResponseNorm(5, 0.5, 0.75, 1.0, groups=2)(a)
    halves = [lrn_by_hand(half, 5, 0.5, 0.75, 1.0) for half in a.split(4, dim=1)]
    torch.testing.assert_close(got, torch.cat(halves, dim=1))
    assert not torch.allclose(got, lrn_by_hand(a, 5, 0.5, 0.75, 1.0))  # channels 3 and 4 are on two GPUs


@pytest.mark.parametrize("groups", [1, 2])
def test_paper_shapes_227_55_27_27_13_13_6(groups):
    model = create_model("alexnet_paper", groups=groups).eval()
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    sizes = []
    for layer in (convs[0], pools[0], convs[1], pools[1], convs[4], pools[2]):
        layer.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[1:])))
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 227, 227))
    assert sizes == [(96, 55, 55), (96, 27, 27), (256, 27, 27), (256, 13, 13), (256, 13, 13), (256, 6, 6)]
    assert logits.shape == (1, 1000)
    assert model.default_cfg["input_size"] == (3, 227, 227)


def test_paper_layers_lrn_after_relu_of_c1_and_c2_then_overlapping_pools():
    model = create_model("alexnet_paper")
    kinds = [type(m).__name__ for m in model.features]
    lrn_at = [i for i, m in enumerate(model.features) if isinstance(m, LocalResponseNorm)]
    assert lrn_at == [2, 6]
    for i in lrn_at:  # conv → ReLU → LRN → 3×3 stride-2 pool
        assert kinds[i - 2 : i + 2] == ["Conv2d", "ReLU", "GroupedLocalResponseNorm", "MaxPool2d"]
        lrn, pool = model.features[i], model.features[i + 1]
        assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 2.0)
        assert (pool.kernel_size, pool.stride) == (3, 2)
    assert [m.out_channels for m in model.features if isinstance(m, nn.Conv2d)] == [96, 256, 384, 384, 256]
    assert [type(m).__name__ for m in model.classifier] == ["Linear", "ReLU", "Dropout"] * 2 + ["Linear"]


def test_paper_parameter_counts_by_hand():
    def conv(inp: int, out: int, k: int, groups: int = 1) -> int:
        return out * (inp // groups * k * k + 1)

    fc = (256 * 6 * 6 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
    one = conv(3, 96, 11) + conv(96, 256, 5) + conv(256, 384, 3) + conv(384, 384, 3) + conv(384, 256, 3) + fc
    two = conv(3, 96, 11) + conv(96, 256, 5, 2) + conv(256, 384, 3) + conv(384, 384, 3, 2) + conv(384, 256, 3, 2) + fc
    assert (one, two) == (62_378_344, 60_965_224)  # two GPUs: the paper's "60 million parameters"
    with torch.device("meta"):
        assert count_parameters(create_model("alexnet_paper")) == one
        assert count_parameters(create_model("alexnet_paper", groups=2)) == two


def test_two_gpu_split_c2_sees_only_its_gpus_c1_maps():
    features = create_model("alexnet_paper", groups=2).features
    c2, c3 = features[4], features[8]
    x = torch.randn(1, 96, 9, 9)
    bumped = x.clone()
    bumped[:, 48:] += 1.0  # the second GPU's C1 maps
    changed = (c2(bumped) - c2(x)).abs().flatten(2).amax(-1).squeeze(0) > 0
    assert not changed[:128].any() and changed[128:].all()
    assert c3.groups == 1 and c3.in_channels == 256  # C3 reads both GPUs


def test_paper_initialisation():
    model = create_model("alexnet_paper")
    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert [m.bias.detach().unique().tolist() for m in layers] == [
        [0.0],
        [1.0],
        [0.0],
        [1.0],
        [1.0],
        [1.0],
        [1.0],
        [0.0],
    ]
    assert abs(float(layers[5].weight.detach().std()) - 0.01) < 1e-4


def test_ablation_options_keep_names_and_shapes():
    with torch.device("meta"):
        names = list(create_model("alexnet_paper").state_dict())
        for options in ({"lrn": False}, {"overlap_pool": False}):
            assert list(create_model("alexnet_paper", **options).state_dict()) == names
        assert not any(isinstance(m, LocalResponseNorm) for m in create_model("alexnet_paper", lrn=False).modules())
    features = create_model("alexnet_paper", overlap_pool=False).features  # 2×2 stride-2 pools (§3.4)
    sizes = []
    for pool in (m for m in features if isinstance(m, nn.MaxPool2d)):
        assert (pool.kernel_size, pool.stride) == (2, 2)
        pool.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1]))
    with torch.no_grad():
        features(torch.randn(1, 3, 227, 227))
    assert sizes == [27, 13, 6]


def test_torchvision_alexnet_count_names_and_outputs():
    torch.manual_seed(0)
    reference = torchvision.models.alexnet()
    model = create_model("alexnet")
    assert count_parameters(model) == count_parameters(reference) == 61_100_840
    assert list(model.state_dict()) == list(reference.state_dict())
    assert_same_outputs(model, reference, "torchvision", (1, 3, 64, 64))
    assert_same_logits_to_scale(model, reference, (1, 3, 64, 64))


def test_stages_and_feature_contract():
    model = create_model("alexnet", num_classes=10)
    assert [(f["num_chs"], f["reduction"]) for f in model.feature_info] == [(64, 8), (192, 16), (256, 32)]
    assert all(isinstance(model.get_submodule(f["module"]), nn.MaxPool2d) for f in model.feature_info)
    assert_feature_contract(model, sizes=(64, 96))
    with torch.device("meta"):
        paper = create_model("alexnet_paper", groups=2)
    assert [(f["num_chs"], f["reduction"]) for f in paper.feature_info] == [(96, 8), (256, 16), (256, 32)]
    # Unpadded 11×11 stride 4: the paper's maps are 27, 13, 6 at 227, two pixels under ⌈227/8⌉, ⌈227/16⌉, beyond
    # the ±1 of assert_feature_contract; test_paper_shapes_227_55_27_27_13_13_6 asserts them exactly instead.


def test_too_small_input_says_the_minimum():
    with torch.device("meta"), pytest.raises(ValueError, match="at least 67×67"):
        create_model("alexnet_paper", num_classes=10)(torch.randn(1, 3, 64, 64))
    with torch.device("meta"):
        assert create_model("alexnet").min_size == 63  # torchvision's documented min_size
        assert create_model("alexnet_paper", overlap_pool=False).min_size == 39


@pytest.mark.parametrize(("name", "size"), [("alexnet", 64), ("alexnet_paper", 67)])
def test_one_training_step_reduces_the_loss(name, size):
    torch.manual_seed(0)
    assert_one_step_reduces_loss(create_model(name, num_classes=10), input_size=(4, 3, size, size))


def test_dense_to_conv_scores_a_larger_image_in_one_pass():
    model = create_model("alexnet", num_classes=10).eval()
    model.avgpool = nn.Identity()  # 6×6 at 224 already; dropping it lets larger inputs give a score map
    converted = dense_to_conv(model, (3, 224, 224))
    with torch.no_grad():
        scores = converted(torch.randn(1, 3, 256, 256))
    assert scores.shape == (1, 10, 2, 2)  # pool5 is 7×7 at 256: 2×2 positions of the 6×6 FC6 window


def test_options_are_checked_and_classifier_resets():
    with pytest.raises(ValueError, match="groups=3"):
        create_model("alexnet_paper", groups=3)
    model = create_model("alexnet_paper", num_classes=10)
    model.reset_classifier(4)
    assert model.get_classifier().out_features == 4 and model.default_cfg["num_classes"] == 4
