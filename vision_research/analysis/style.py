"""Neural style transfer (``vr style``): L. Gatys, A. Ecker, M. Bethge, "Image Style Transfer Using Convolutional
Neural Networks", CVPR 2016; Michelucci, Advanced Applied Deep Learning, ch. 5.

The pixels of an image are optimised so that its feature maps at one deep layer match the content image's (eq. 1)
and the correlations between the feature maps (Gram matrices) at several layers match the style image's (eq. 3-5),
with weights α (content) and β (style), eq. 7, and optionally a total-variation term that smooths the result
(Mahendran & Vedaldi 2015; not in Gatys et al.). The features are those of VGG-19 (§2) by the paper's layer names,
the ReLU outputs ``conv1_1``, ``conv2_1``, … (``vgg_layer_names``): style from conv1_1, conv2_1, conv3_1, conv4_1 and
conv5_1 with equal weights, content from conv5_2 (as Michelucci's ``block5_conv2``; the paper shows conv4_2) and, as
the paper suggests (§2), the max-pools replaced by average pools. Any other registered backbone works too, by module
names: style from each of its stages (``feature_info``), content from the last.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchmetrics.functional.image import total_variation as _total_variation
from tqdm import tqdm

from ..errors import ConfigError, unknown_name_error
from ..models.vgg import VGG
from .inspect import checked_forward, get_module, hooked_outputs, stage_layers

STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
CONTENT_LAYER = "conv5_2"
POOLINGS = ("avg", "max")
OPTIMIZERS = {"adam": 0.1, "lbfgs": 1.0}  # name → default learning rate (Adam: normalised input units per step)
INITS = ("content", "noise")


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """The Gram matrices [N, C, C] of feature maps [N, C, H, W] (eq. 3: G_ij = Σ_k F_ik F_jk over the M = H·W
    positions), divided by C·H·W = N_l·M_l: the values then do not grow with the image size (style and generated
    images may differ in size) nor with the layer's width, and eq. 4's 1 / (4 N_l² M_l²) becomes 1/4."""
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def content_loss(generated: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Eq. 1: ½ Σ (F − P)² over every element of the generated image's and the content image's feature maps."""
    return 0.5 * (generated - content).pow(2).sum()


def style_loss(
    generated_grams: Sequence[torch.Tensor], style_grams: Sequence[torch.Tensor], weights: Sequence[float] | None = None
) -> torch.Tensor:
    """Eq. 4-5: Σ_l w_l E_l, E_l = Σ (G_l − A_l)² / (4 N_l² M_l²) = ¼ Σ (Ĝ_l − Â_l)² for the Gram matrices Ĝ, Â of
    ``gram_matrix`` (divided by N_l M_l), summed over every element; ``weights`` w_l default to 1/L each."""
    weights = weights if weights is not None else [1.0 / len(generated_grams)] * len(generated_grams)
    terms = zip(weights, generated_grams, style_grams, strict=True)
    return sum(weight * (generated - style).pow(2).sum() / 4 for weight, generated, style in terms)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """The anisotropic total variation of ``image`` [N, C, H, W]: Σ |x_{i+1,j} − x_ij| + |x_{i,j+1} − x_ij| over
    every image and channel (``torchmetrics``' ``total_variation``, as TensorFlow's)."""
    return _total_variation(image, reduction="sum")


def vgg_layer_names(features: nn.Sequential) -> dict[str, int]:
    """The paper's names of the ReLU outputs of VGG's ``features`` (``conv<block>_<index in block>``, blocks closed by
    max-pools) → their index in ``features``: in VGG-19, conv1_1 → 1, conv4_2 → 22, conv5_2 → 31."""
    names, block, conv = {}, 1, 0
    for index, module in enumerate(features):
        if isinstance(module, nn.Conv2d):
            conv += 1
        elif isinstance(module, nn.ReLU):
            names[f"conv{block}_{conv}"] = index
        elif isinstance(module, nn.MaxPool2d):
            block, conv = block + 1, 0
    return names


class StyleFeatures(nn.Module):
    """A frozen feature extractor: ``forward(image)`` gives the maps of the style layers and of the content layer.

    A VGG (``models.vgg.VGG``) is read by the paper's layer names (``vgg_layer_names``; defaults ``STYLE_LAYERS``,
    ``CONTENT_LAYER``), its ``features`` cut after the last layer needed, with average pools (``pooling="avg"``, the
    default, §2) or its max-pools (``"max"``). Another backbone is read by module names (``model.named_modules()``;
    default: its stages for style, the last stage for content) and keeps its own pooling. The model's weights are
    frozen (``requires_grad_(False)``): only the image is optimised.
    """

    def __init__(
        self,
        model: nn.Module,
        style_layers: Sequence[str] | None = None,
        content_layer: str | None = None,
        pooling: str | None = None,
    ) -> None:
        super().__init__()
        self.model_name = type(model).__name__
        if isinstance(model, VGG):
            names = vgg_layer_names(model.features)
            self.style_layers = list(style_layers or STYLE_LAYERS)
            self.content_layer = content_layer or CONTENT_LAYER
            for layer in [*self.style_layers, self.content_layer]:
                if layer not in names:
                    raise unknown_name_error("VGG layer", layer, names, "(the paper's names of the ReLU outputs)")
            if (pooling or "avg") not in POOLINGS:
                raise unknown_name_error("pooling", pooling, POOLINGS)
            last = max(names[layer] for layer in [*self.style_layers, self.content_layer])
            self.body = nn.Sequential(*(self._pool(module, pooling or "avg") for module in model.features[: last + 1]))
            self.modules_of = {layer: str(names[layer]) for layer in [*self.style_layers, self.content_layer]}
        else:
            if pooling is not None:
                raise ConfigError(f"pooling applies to VGG models only, not to {type(model).__name__}")
            stages = stage_layers(model)
            self.style_layers = list(style_layers or stages)
            self.content_layer = content_layer or stages[-1]
            self.body = model
            self.modules_of = {layer: layer for layer in [*self.style_layers, self.content_layer]}
            for layer in self.modules_of:
                get_module(model, layer)
        self.body.eval().requires_grad_(False)

    @staticmethod
    def _pool(module: nn.Module, pooling: str) -> nn.Module:
        if pooling == "avg" and isinstance(module, nn.MaxPool2d):
            return nn.AvgPool2d(module.kernel_size, module.stride, module.padding, module.ceil_mode)
        return module

    def forward(self, image: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        with hooked_outputs(self.body, list(self.modules_of.values())) as outputs:
            checked_forward(self.body, image, self.model_name)
        maps = {layer: outputs[module] for layer, module in self.modules_of.items()}
        return [maps[layer] for layer in self.style_layers], maps[self.content_layer]


class StyleTransferLoss(nn.Module):
    """Eq. 7 and a total-variation term: ``forward(image)`` gives the terms ``content`` (eq. 1), ``style`` (eq. 5),
    ``tv`` and ``total`` = α·content + β·style + tv_weight·tv against the targets of the ``content`` and ``style``
    images (normalised inputs [1, C, H, W]; their sizes may differ)."""

    def __init__(
        self,
        features: StyleFeatures,
        content: torch.Tensor,
        style: torch.Tensor,
        content_weight: float = 1.0,
        style_weight: float = 1e6,
        tv_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.features = features
        self.content_weight, self.style_weight, self.tv_weight = content_weight, style_weight, tv_weight
        with torch.no_grad():
            self.content_target = features(content)[1].clone()
            self.style_grams = [gram_matrix(maps) for maps in features(style)[0]]

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        style_maps, content_maps = self.features(image)
        terms = {
            "content": content_loss(content_maps, self.content_target),
            "style": style_loss([gram_matrix(maps) for maps in style_maps], self.style_grams),
            "tv": total_variation(image),
        }
        weights = (self.content_weight, self.style_weight, self.tv_weight)
        terms["total"] = sum(weight * term for weight, term in zip(weights, terms.values(), strict=True))
        return terms


def style_transfer(
    loss: StyleTransferLoss,
    content: torch.Tensor,
    steps: int = 300,
    optimizer: str = "lbfgs",
    lr: float | None = None,
    init: str = "content",
    bounds: tuple[torch.Tensor, torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """The image that minimises ``loss``, its pixels the parameters (Gatys et al. §2): started from the ``content``
    image or, with ``init="noise"``, from uniform noise over ``bounds`` drawn from ``generator`` (the paper's white
    noise), then ``steps`` steps of Adam or of L-BFGS (the paper's; one iteration a step, strong-Wolfe line search),
    learning rate ``lr`` (default ``OPTIMIZERS``), the pixels clipped to ``bounds`` (``inspect.pixel_bounds``) after
    each. A tqdm bar shows the loss terms unless ``progress`` is False."""
    if optimizer not in OPTIMIZERS:
        raise unknown_name_error("optimizer", optimizer, OPTIMIZERS)
    if init not in INITS:
        raise unknown_name_error("init", init, INITS)
    if steps < 1:
        raise ConfigError(f"style transfer needs at least 1 step; got steps={steps}")
    if init == "content":
        image = content.detach().clone(memory_format=torch.contiguous_format)  # L-BFGS views the gradient flat
    else:
        low, high = bounds if bounds is not None else (content.min(), content.max())
        image = low + (high - low) * torch.rand(content.shape, generator=generator)
    image.requires_grad_(True)
    lr = OPTIMIZERS[optimizer] if lr is None else lr
    if optimizer == "adam":
        solver: torch.optim.Optimizer = torch.optim.Adam([image], lr=lr)
    else:
        solver = torch.optim.LBFGS([image], lr=lr, max_iter=1, line_search_fn="strong_wolfe")
    terms: dict[str, torch.Tensor] = {}

    def closure() -> torch.Tensor:
        solver.zero_grad()
        terms.update(loss(image))
        terms["total"].backward()
        return terms["total"]

    with tqdm(range(steps), desc="style", disable=not progress) as bar:
        for _ in bar:
            solver.step(closure)
            if bounds is not None:
                with torch.no_grad():
                    image.clamp_(*bounds)
            bar.set_postfix({name: f"{term.item():.3g}" for name, term in terms.items()})
    return image.detach()
