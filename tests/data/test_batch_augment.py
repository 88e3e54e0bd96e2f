"""The batched random affine: identity at zero strength, per-image parameters, shifts that move content."""

import pytest
import torch

from vision_research.data.batch_augment import RandomAffineBatch


def square_images(n: int) -> torch.Tensor:
    x = torch.zeros(n, 1, 32, 32)
    x[:, :, 12:20, 12:20] = 1.0
    return x


def centroid(x: torch.Tensor) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    mass = x.sum((1, 2, 3))
    return torch.stack([(x[:, 0] * xs).sum((1, 2)) / mass, (x[:, 0] * ys).sum((1, 2)) / mass], 1)


def test_zero_strength_is_the_identity():
    x = torch.rand(3, 1, 32, 32)
    torch.testing.assert_close(RandomAffineBatch(0, 0, 0)(x), x, atol=1e-5, rtol=0)


def test_shift_only_moves_each_image_by_its_own_offset_within_bounds():
    torch.manual_seed(0)
    out = RandomAffineBatch(degrees=0, translate=0.1, scale=0)(square_images(64))
    shift = centroid(out) - 15.5
    assert shift.abs().max() <= 0.1 * 32 + 0.5
    assert shift.std(0).min() > 0.5  # independent offsets per image, not one for the batch
    torch.testing.assert_close(out.sum((1, 2, 3)), torch.full((64,), 64.0), atol=0.5, rtol=0)  # nothing lost


def test_rotation_keeps_the_centre_and_mass():
    torch.manual_seed(1)
    out = RandomAffineBatch(degrees=30, translate=0, scale=0)(square_images(16))
    torch.testing.assert_close(centroid(out), torch.full((16, 2), 15.5), atol=0.3, rtol=0)


def test_invalid_strength_is_rejected():
    with pytest.raises(ValueError, match="translate"):
        RandomAffineBatch(translate=1.5)
