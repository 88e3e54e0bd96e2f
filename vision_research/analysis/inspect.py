"""Look inside a CNN (``vr inspect``): feature maps, first-layer filters, hand-made kernels, Grad-CAM heat maps.

Feature maps and first-layer filters are shown as in Zeiler & Fergus, "Visualizing and Understanding Convolutional
Networks" (ECCV 2014); the hand-made kernels are the books' edge, line and blur filters (Géron, ch. 14); the heat maps
are Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization",
ICCV 2017) from the ``grad-cam`` library. Figures are ``matplotlib.figure.Figure`` objects written with the Agg
renderer (no pyplot state, no display needed). Loading a model and an image, hooking module outputs and writing an
input back as a PNG are shared with ``vr dream`` (``dream.py``) and ``vr style`` (``style.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from PIL import Image
from torch import nn

from ..data.base import normalise
from ..data.images import load_rgb
from ..errors import ConfigError, close_matches
from ..visualize import denormalize

# The books' hand-made kernels (Géron ch. 14: vertical / horizontal line filters; Sobel-like edge filters; box blur).
_LINE = torch.zeros(7, 7)
_LINE[:, 3] = 1.0
HANDMADE_KERNELS: dict[str, torch.Tensor] = {
    "vertical edge": torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]),
    "horizontal edge": torch.tensor([[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]]),
    "box blur 3×3": torch.full((3, 3), 1.0 / 9.0),
    "vertical line": _LINE,
    "horizontal line": _LINE.T.contiguous(),
}


@dataclass
class InputSpec:
    """What the model expects: channels, (height, width) and the per-channel normalisation."""

    in_chans: int
    size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]


def load_model(
    name: str | None = None, ckpt: str | Path | None = None, pretrained: str | None = None
) -> tuple[nn.Module, InputSpec]:
    """A model in eval mode and its input spec: a registered model ``name`` (random weights unless ``pretrained``,
    a local file or a ``torchvision:``/``timm:`` tag) or the model of a run's checkpoint ``ckpt`` (classification:
    ``task.model``, other tasks: their backbone) with the run's image size and the task's mean / std."""
    if (name is None) == (ckpt is None):
        raise ConfigError("give exactly one of --model NAME and --ckpt-path PATH")
    if ckpt is not None:
        if pretrained is not None:
            raise ConfigError("--pretrained goes with --model; a checkpoint brings its own weights")
        from ..run_dir import load_task, run_input_size

        cfg, task = load_task(ckpt)
        model = task.model if cfg.task.name == "classification" else task.pretrained_module()
        size = run_input_size(cfg, task, default=model.default_cfg["input_size"][-1])
        spec = InputSpec(int(task.hparams.in_chans), (size, size), *task.input_stats)
    else:
        from ..models import create_model

        model = create_model(name, pretrained=pretrained)
        channels, height, width = model.default_cfg["input_size"]
        spec = InputSpec(channels, (height, width), tuple(model.default_cfg["mean"]), tuple(model.default_cfg["std"]))
    return model.eval(), spec


def prepare_image(path: str | Path, spec: InputSpec, side: int | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """The image at ``path`` as the model's normalised input [1, C, H, W] (grey for a 1-channel model) and as shown,
    resized RGB floats in [0, 1] [H, W, 3]: at the model's input size, or with ``side`` at its own aspect ratio with
    its longer side ``side`` pixels."""
    picture = Image.fromarray(load_rgb(path))
    if side is None:
        size = spec.size[::-1]
    else:
        scale = side / max(picture.size)
        size = tuple(max(1, round(length * scale)) for length in picture.size)
    picture = picture.resize(size, Image.Resampling.BILINEAR)
    if spec.in_chans == 1:
        picture = picture.convert("L").convert("RGB")
    pixels = np.asarray(picture)
    tensor = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None, : spec.in_chans]
    return normalise(tensor, spec.mean, spec.std), pixels.astype(np.float32) / 255.0


def pixel_bounds(spec: InputSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised values [1, C, 1, 1] of black and white per channel: the valid range of an input pixel."""
    mean, std = torch.tensor(spec.mean).view(1, -1, 1, 1), torch.tensor(spec.std).view(1, -1, 1, 1)
    return -mean / std, (1.0 - mean) / std


def save_image(image: torch.Tensor, spec: InputSpec, path: str | Path) -> Path:
    """Write the normalised input ``image`` [1, C, H, W] back as an 8-bit PNG (RGB, or grey for one channel) at
    ``path`` (its folder made) and return the path; the inverse of ``prepare_image``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = denormalize(image.detach().cpu(), spec.mean, spec.std)[0].permute(1, 2, 0).numpy()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(path, format="PNG")
    return path


def load_grey(path: str | Path, max_side: int = 512) -> torch.Tensor:
    """The image at ``path`` in grey [H, W] in [0, 1], shrunk to at most ``max_side`` pixels a side."""
    picture = Image.fromarray(load_rgb(path)).convert("L")
    picture.thumbnail((max_side, max_side))
    return torch.from_numpy(np.asarray(picture).copy()).float() / 255.0


def get_module(model: nn.Module, name: str) -> nn.Module:
    """The sub-module ``name`` of ``model`` (a name of ``model.named_modules()``); an unknown name is a
    ``ConfigError`` listing close names."""
    modules = dict(model.named_modules())
    if name in modules and name:
        return modules[name]
    matches = close_matches(name, [n for n in modules if n])
    stages = ", ".join(stage_layers(model))
    hint = f"Did you mean: {', '.join(matches)}?" if matches else f"The stages are: {stages}."
    raise ConfigError(
        f"{type(model).__name__} has no module '{name}'. {hint} "
        "Names are those of model.named_modules(); vr models NAME lists the stages"
    )


def stage_layers(model: nn.Module) -> list[str]:
    """The module names of the backbone's stages (``feature_info[i]["module"]``)."""
    return [info["module"] for info in model.feature_info]


class _Captured(dict):
    """Module outputs by name; a module that did not run is a ``ConfigError``, not a ``KeyError``."""

    def __missing__(self, name: str) -> torch.Tensor:
        raise ConfigError(f"module '{name}' did not run in the forward pass (an auxiliary head in eval mode?)")


@contextmanager
def hooked_outputs(model: nn.Module, layers: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Inside the block, the outputs of the modules ``layers`` (checked by ``get_module``) at the latest forward pass,
    by name, captured with forward hooks (the first element of a tuple output); the hooks go when the block ends."""
    modules = {name: get_module(model, name) for name in layers}
    captured = _Captured()

    def hook(name: str):
        def keep(module: nn.Module, inputs: object, output: torch.Tensor | tuple) -> None:
            captured[name] = output[0] if isinstance(output, tuple) else output

        return keep

    handles = [module.register_forward_hook(hook(name)) for name, module in modules.items()]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def checked_forward(model: nn.Module, image: torch.Tensor, name: str | None = None) -> torch.Tensor:
    """``model(image)``; a model (called ``name``, default its class name) that cannot take an image of this size
    (pooled below a pixel, or not the size its classifier was built for) is a one-line ``ConfigError``."""
    try:
        return model(image)
    except (RuntimeError, ValueError) as err:
        height, width = image.shape[-2:]
        reason = str(err).strip().splitlines()[0]
        raise ConfigError(
            f"{name or type(model).__name__} cannot take a {height}×{width} input ({reason}); give the image another "
            "size (--size)"
        ) from None


def feature_maps(
    model: nn.Module, image: torch.Tensor, layers: list[str] | None = None, count: int = 16
) -> dict[str, torch.Tensor]:
    """The first ``count`` maps [K, H, W] of the first image of ``image`` after each module of ``layers`` (default:
    each stage), captured with forward hooks (Zeiler & Fergus 2014)."""
    layers = layers or stage_layers(model)
    with hooked_outputs(model, layers) as captured, torch.no_grad():
        model.eval()(image)
    return {name: captured[name][0, :count] for name in layers}


def plot_feature_maps(maps: dict[str, torch.Tensor]) -> Figure:
    """One labelled row of maps per layer."""
    columns = max(m.shape[0] for m in maps.values())
    fig = Figure(figsize=(1.2 * columns + 1, 1.3 * len(maps)))
    axes = fig.subplots(len(maps), columns, squeeze=False)
    for row, (name, stack) in zip(axes, maps.items(), strict=True):
        for index, ax in enumerate(row):
            ax.set_axis_off()
            if index < stack.shape[0]:
                ax.imshow(stack[index].float().numpy(), cmap="viridis")
        row[0].set_axis_on()
        row[0].set_xticks([])
        row[0].set_yticks([])
        row[0].set_ylabel(f"{name}\n{tuple(stack.shape[1:])}", fontsize=8)
    return fig


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The first convolution: ``default_cfg["first_conv"]`` or else the first ``nn.Conv2d``."""
    name = getattr(model, "default_cfg", {}).get("first_conv")
    module = model.get_submodule(name) if name else None
    if isinstance(module, nn.Conv2d):
        return module
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


def first_layer_filters(model: nn.Module) -> torch.Tensor:
    """The first conv layer's kernels [out, in, kH, kW], each min-max normalised to [0, 1] (Zeiler & Fergus 2014)."""
    weight = first_conv(model).weight.detach().float()
    low = weight.amin(dim=(1, 2, 3), keepdim=True)
    high = weight.amax(dim=(1, 2, 3), keepdim=True)
    return (weight - low) / (high - low).clamp_min(1e-12)


def handmade_filters(image: torch.Tensor) -> dict[str, torch.Tensor]:
    """The books' hand-made kernels applied to a grey image [H, W] with ``torch.nn.functional.conv2d`` (replicated
    borders, so a flat region answers 0 everywhere, also at the image edges)."""
    grey = image.float()[None, None]
    responses = {}
    for name, kernel in HANDMADE_KERNELS.items():
        pad = kernel.shape[-1] // 2
        padded = F.pad(grey, (pad, pad, pad, pad), mode="replicate")
        responses[name] = F.conv2d(padded, kernel[None, None])[0, 0]
    return responses


def plot_filters(kernels: torch.Tensor, image: torch.Tensor | None = None) -> Figure:
    """The kernels as a grid (RGB when they have 3 input channels, else their first channel in grey) and, with a grey
    ``image`` [H, W] in [0, 1], a row with the original and the hand-made filters' responses."""
    columns = int(np.ceil(np.sqrt(len(kernels))))
    rows = int(np.ceil(len(kernels) / columns))
    extra = 0 if image is None else 1
    width = max(columns, len(HANDMADE_KERNELS) + 1 if extra else 0)
    fig = Figure(figsize=(1.4 * width, 1.4 * rows + 2.5 * extra))
    grid = fig.add_gridspec(rows + extra, width, height_ratios=[1] * rows + [1.8] * extra)
    for index, kernel in enumerate(kernels):
        ax = fig.add_subplot(grid[index // columns, index % columns])
        ax.set_axis_off()
        if kernel.shape[0] == 3:
            ax.imshow(kernel.permute(1, 2, 0).numpy(), interpolation="nearest")
        else:
            ax.imshow(kernel[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    if image is not None:
        shown = {"original": image, **handmade_filters(image)}
        for column, (name, picture) in enumerate(shown.items()):
            ax = fig.add_subplot(grid[rows, column])
            ax.set_axis_off()
            ax.imshow(picture.numpy(), cmap="gray")
            ax.set_title(name, fontsize=8)
    fig.suptitle(f"first conv: {len(kernels)} kernels {tuple(kernels.shape[1:])}", fontsize=9)
    return fig


def grad_cam(
    model: nn.Module, image: torch.Tensor, target_layer: str | None = None, class_index: int | None = None
) -> tuple[np.ndarray, int]:
    """The Grad-CAM heat map [H, W] in [0, 1] of ``image`` [1, C, H, W] for ``class_index`` (default: the top class)
    at ``target_layer`` (default: the last stage) and the class it explains (Selvaraju et al. 2017, via the
    ``grad-cam`` library)."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer = get_module(model.eval(), target_layer or stage_layers(model)[-1])
    with torch.no_grad():
        logits = model(image)[0]
    if class_index is None:
        class_index = int(logits.argmax())
    elif not 0 <= class_index < len(logits):
        raise ConfigError(f"class index {class_index} out of range: the model has {len(logits)} classes")
    with GradCAM(model=model, target_layers=[layer]) as cam:
        heat = cam(input_tensor=image, targets=[ClassifierOutputTarget(class_index)])[0]
    return heat, class_index


def plot_cam(picture: np.ndarray, heat: np.ndarray, title: str) -> Figure:
    """The image [H, W, 3] in [0, 1] beside its heat map laid over it (``show_cam_on_image``)."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    fig = Figure(figsize=(8, 4.4))
    axes = fig.subplots(1, 2)
    overlay = show_cam_on_image(picture, heat, use_rgb=True)
    for ax, shown, name in zip(axes, (picture, overlay), ("image", title), strict=True):
        ax.imshow(shown)
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` to the PNG ``path`` (its folder made) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def log_to_run(ckpt: str | Path, tag: str, picture: Figure | str | Path) -> Path | None:
    """Add ``picture`` (a figure, or a written PNG) to the TensorBoard events of the run ``ckpt`` belongs to
    (``<run>/checkpoints/<name>.ckpt``, ``<run>/config.yaml``) under ``tag``, at the checkpoint's global step, so that
    it shows in the run's Images tab beside its curves; returns the run folder, None for a file outside a run."""
    from torch.utils.tensorboard import SummaryWriter

    from ..run_dir import CHECKPOINTS, CONFIG, checkpoint_step

    ckpt = Path(ckpt).resolve()
    run_dir = ckpt.parent.parent
    if ckpt.parent.name != CHECKPOINTS.name or not (run_dir / CONFIG).is_file():
        return None
    step = checkpoint_step(ckpt)
    with SummaryWriter(log_dir=str(run_dir)) as writer:
        if isinstance(picture, Figure):
            writer.add_figure(tag, picture, global_step=step, close=False)
        else:
            writer.add_image(tag, np.asarray(Image.open(picture).convert("RGB")), step, dataformats="HWC")
    return run_dir
