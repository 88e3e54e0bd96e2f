"""Augmentation applied to a whole batch on its device, with independent parameters per image.

For small in-memory images (digits) a per-sample CPU pipeline costs more than the model; a batched
affine warp (``F.affine_grid`` + ``F.grid_sample``) runs once per batch on whatever device holds it —
augmentation inside the model, on the GPU, as Géron ch. 14 (3rd ed.) recommends.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class RandomAffineBatch(torch.nn.Module):
    """Random rotation (± ``degrees``), shift (± ``translate`` of the size) and zoom (1 ± ``scale``) per image.

    Pixels that come from outside the image are filled with 0, so apply it before normalisation.
    """

    def __init__(self, degrees: float = 10.0, translate: float = 0.1, scale: float = 0.1) -> None:
        super().__init__()
        if degrees < 0 or not 0 <= translate < 1 or not 0 <= scale < 1:
            raise ValueError(
                f"RandomAffineBatch needs degrees >= 0, 0 <= translate < 1, 0 <= scale < 1; got "
                f"{degrees}, {translate}, {scale}"
            )
        self.degrees, self.translate, self.scale = degrees, translate, scale

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n, device = images.shape[0], images.device
        uniform = torch.rand(n, 4, device=device) * 2 - 1  # angle, zoom, dx, dy in [-1, 1]
        angle = uniform[:, 0] * math.radians(self.degrees)
        inv_zoom = 1.0 / (1.0 + uniform[:, 1] * self.scale)
        theta = torch.zeros(n, 2, 3, device=device)
        theta[:, 0, 0] = theta[:, 1, 1] = torch.cos(angle) * inv_zoom
        theta[:, 0, 1] = -torch.sin(angle) * inv_zoom
        theta[:, 1, 0] = torch.sin(angle) * inv_zoom
        theta[:, :, 2] = uniform[:, 2:] * (2 * self.translate)  # grid coordinates span [-1, 1]
        grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def extra_repr(self) -> str:
        return f"degrees={self.degrees}, translate={self.translate}, scale={self.scale}"
