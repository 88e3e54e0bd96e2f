"""The check of an export: the exported file and the eager task on the same batch, their largest difference.

The batch is ``IMAGES`` standard-normal images (seed ``SEED``), the scale of normalised inputs, in the export's
dtype; the eager reference is the task in that same dtype, so the check measures the export, not the rounding
of a lower precision. A graph with a fixed batch of one is run image by image. The check passes when the largest
absolute difference over every output is at most ``tolerance · max(1, largest |eager output|)``: an absolute
tolerance for outputs within ±1, a relative one beyond (logits and raw box outputs of trained models reach tens).
Default tolerances, ``TOLERANCES``: fp32 1e-4 (kernels that sum in another order differ by ~1e-6); fp16 1e-2
and bf16 5e-2, a few units in the last place of their 11- and 8-bit significands.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from .graph import Graph, as_list

IMAGES, SEED = 2, 0
TOLERANCES = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 5e-2}


def verification_images(channels: int, size: int, dtype: torch.dtype) -> Tensor:
    """``IMAGES`` standard-normal images [IMAGES, channels, size, size] drawn with ``SEED``, in ``dtype``."""
    generator = torch.Generator().manual_seed(SEED)
    return torch.randn(IMAGES, channels, size, size, generator=generator).to(dtype)


@torch.no_grad()
def compare(graph: Graph, run: Callable[[Tensor], list[Tensor]], images: Tensor, tolerance: float) -> dict[str, Any]:
    """Run ``images`` through the eager task and the exported ``run``: the largest absolute difference, the
    outputs' scale, the tolerance and whether the check passed."""
    expected = as_list(graph.model(images))
    if 0 in graph.dynamic_axes:
        found = run(images)
    else:
        found = [torch.cat(parts) for parts in zip(*(run(image[None]) for image in images), strict=True)]
    for name, got, want in zip(graph.output_names, found, expected, strict=True):
        if got.shape != want.shape:
            raise ConfigError(
                f"the exported model's output {name} has shape {list(got.shape)}, the eager model's {list(want.shape)}"
            )
    difference = max((got.float() - want.float()).abs().max().item() for got, want in zip(found, expected, strict=True))
    scale = max(want.float().abs().max().item() for want in expected)
    return {
        "images": len(images),
        "seed": SEED,
        "max_abs_diff": difference,
        "output_scale": scale,
        "tolerance": tolerance,
        "passed": difference <= tolerance * max(1.0, scale),
    }
