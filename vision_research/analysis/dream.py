"""DeepDream (``vr dream``): gradient ascent on the input image to amplify what chosen layers see.

A. Mordvintsev, C. Olah, M. Tyka, "Inceptionism: Going Deeper into Neural Networks" (Google Research blog, 2015)
and their ``deepdream`` notebook; Géron, Hands-On ML, ch. 14 exercise. The objective is the original's
``objective_L2``: the squared L2 norm of each chosen layer's activation, here divided by its number of elements so
that every layer counts alike, summed over the layers. Each step follows the gradient normalised by its mean
absolute value: a pixel moves by ``step_size`` on average, in the normalised input's units (0.02 there is about
0.005 of the [0, 1] range, as the Keras example's 0.01 on inputs in [-1, 1] and the notebook's 1.5 on [0, 255]),
on the image rolled by a random shift (jitter, undone after the step), and clips the pixels to the valid range. The
image is processed as a pyramid of octaves, from the smallest (each ``octave_scale`` times smaller) up: the detail
dreamed at one octave is enlarged and added to the next, larger, one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..errors import ConfigError
from .inspect import checked_forward, hooked_outputs


def dream_objective(activations: Sequence[torch.Tensor]) -> torch.Tensor:
    """The sum over layers of the mean squared activation (the squared L2 norm over its size)."""
    return sum(activation.float().pow(2).mean() for activation in activations)


def octave_sizes(size: Sequence[int], octaves: int, octave_scale: float) -> list[tuple[int, int]]:
    """The (height, width) of each octave, smallest first: ``size`` divided by ``octave_scale`` ** k, k = octaves−1
    … 0."""
    return [tuple(max(1, round(length / octave_scale**k)) for length in size) for k in reversed(range(octaves))]


def deep_dream(
    model: nn.Module,
    image: torch.Tensor,
    layers: list[str],
    octaves: int = 3,
    octave_scale: float = 1.4,
    steps: int = 10,
    step_size: float = 0.02,
    jitter: int = 32,
    generator: torch.Generator | None = None,
    bounds: tuple[torch.Tensor, torch.Tensor] | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """``image`` [1, C, H, W] (normalised model input) dreamed at the modules ``layers`` of ``model`` (see the module
    docstring): ``steps`` gradient-ascent steps at each of ``octaves`` scales, shifts up to ``jitter`` pixels drawn
    from ``generator``, pixels clipped to ``bounds`` (``inspect.pixel_bounds``; None: not clipped). Returns the
    dreamed image, same size, detached; a tqdm bar shows the steps and the objective unless ``progress`` is False."""
    if octaves < 1 or steps < 1 or octave_scale < 1 or jitter < 0:
        raise ConfigError(
            f"deep_dream needs octaves ≥ 1, steps ≥ 1, octave_scale ≥ 1 and jitter ≥ 0; got octaves={octaves}, "
            f"steps={steps}, octave_scale={octave_scale}, jitter={jitter}"
        )
    model.eval()
    base = image.detach()
    pyramid = [
        F.interpolate(base, size=size, mode="bilinear", align_corners=False, antialias=True)
        for size in octave_sizes(base.shape[-2:], octaves, octave_scale)
    ]
    detail = torch.zeros_like(pyramid[0])
    with hooked_outputs(model, layers) as outputs:
        with torch.no_grad():  # a size the model cannot take or a layer it does not run fails before the progress bar
            checked_forward(model, pyramid[0])
            dream_objective([outputs[name] for name in layers])
        with tqdm(total=octaves * steps, desc="dream", disable=not progress) as bar:
            for octave in pyramid:
                detail = F.interpolate(detail, size=octave.shape[-2:], mode="bilinear", align_corners=False)
                dreamed = octave + detail
                for _ in range(steps):
                    shift = torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist()
                    rolled = torch.roll(dreamed, shift, dims=(-2, -1)).requires_grad_(True)
                    model(rolled)
                    objective = dream_objective([outputs[name] for name in layers])
                    (gradient,) = torch.autograd.grad(objective, rolled)
                    rolled = rolled.detach() + step_size * gradient / gradient.abs().mean().clamp_min(1e-8)
                    dreamed = torch.roll(rolled, [-s for s in shift], dims=(-2, -1))
                    if bounds is not None:
                        dreamed = dreamed.clamp(*bounds)
                    bar.set_postfix(objective=f"{objective.item():.4g}")
                    bar.update()
                detail = dreamed - octave
    return dreamed
