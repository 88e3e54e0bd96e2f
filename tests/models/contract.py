"""Checks every backbone must pass; family tests call these with their own models and references."""

from __future__ import annotations

import torch
from torch import nn

from vision_research.models import count_parameters, load_pretrained


def randomize_norm_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm random running statistics and affine terms, so that a wrong mapping shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
                if module.affine:
                    module.weight.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
                    module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
    return model


def assert_same_outputs(
    ours: nn.Module, reference: nn.Module, source: str, input_size=(2, 3, 64, 64), atol: float = 1e-4
) -> None:
    """Reference weights ported through ``load_pretrained`` give the reference's eval-mode logits.

    Within ``atol`` (the acceptance bound) and within 1e-5 of the logits' own scale: freshly initialised
    networks give logits of ~0.1, where 1e-4 alone would let a wrong BatchNorm eps through.
    """
    reference = randomize_norm_stats(reference).eval()
    report = load_pretrained(ours, reference.state_dict(), source)
    assert not report.missing and not report.reinitialised and not report.adapted, report
    assert count_parameters(ours) == count_parameters(reference)
    ours.eval()
    x = torch.randn(*input_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    torch.testing.assert_close(got, expected, atol=min(atol, 1e-5 * expected.abs().max().item()), rtol=0)


def assert_feature_contract(model: nn.Module, sizes=(64, 96), in_chans: int = 3) -> None:
    """``forward_features`` returns one map per ``feature_info`` stage, with its channels and reduction."""
    model.eval()
    for size in sizes:
        with torch.no_grad():
            features = model.forward_features(torch.randn(1, in_chans, size, size))
        assert len(features) == len(model.feature_info)
        for fmap, info in zip(features, model.feature_info, strict=True):
            assert fmap.shape[1] == info["num_chs"], info
            expected = -(-size // info["reduction"])  # ceil: SAME-padded strides
            assert abs(fmap.shape[-1] - expected) <= 1, (size, info, tuple(fmap.shape))


def assert_one_step_reduces_loss(model: nn.Module, input_size=(4, 3, 64, 64), num_classes: int = 10) -> None:
    """One SGD step on a fixed batch lowers that batch's loss (the model trains end to end).

    The dropout masks are the same before and after the step (same seed); aux outputs, if any, are ignored.
    """
    model.train()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(*input_size, generator=generator)
    y = torch.randint(0, num_classes, (input_size[0],), generator=generator)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    def loss() -> torch.Tensor:
        torch.manual_seed(123)
        out = model(x)
        return nn.functional.cross_entropy(out[0] if isinstance(out, tuple | list) else out, y)

    before = loss()
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = loss()
    assert after < before, (before.item(), after.item())
