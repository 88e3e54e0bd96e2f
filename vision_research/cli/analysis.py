"""``vr compare``, ``vr inspect``, ``vr dream`` and ``vr style``: comparing runs, and looking inside a CNN."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .command import ArgumentParser, RenamedFlag, new_parser, parser_command


def add_output(parser: argparse.ArgumentParser, default: str) -> None:
    """``--output FILE`` (``--out``, its old spelling, still accepted)."""
    parser.add_argument("--output", default=default, help=f"the PNG to write (default: {default})")
    parser.add_argument("--out", dest="output", action=RenamedFlag, new="--output")


def add_model_source(parser: argparse.ArgumentParser, model_default: str | None = None) -> None:
    """``--model`` with ``--pretrained`` weights, or ``--ckpt-path`` (``--ckpt``, its old spelling, still accepted)."""
    shown = f" (default: {model_default})" if model_default else " (random weights unless --pretrained)"
    parser.add_argument("--model", default=None, help=f"a registered model{shown}")
    parser.add_argument("--pretrained", default=None, help="weights for --model: a file or torchvision:/timm: tag")
    parser.add_argument("--ckpt-path", default=None, help="a classification run's checkpoint (others: their backbone)")
    parser.add_argument("--ckpt", dest="ckpt_path", action=RenamedFlag, new="--ckpt-path")


def compare_parser() -> ArgumentParser:
    parser = new_parser(
        "compare",
        "Compare the runs under folders (a sweep, runs/) with statistics over seeds. Groups by the overrides that "
        "differ (the seed excepted): mean ± std per group, Welch's 95 % interval of the difference to a baseline "
        "group, learning curves, TensorBoard group means. Runs of several data sets or tasks are refused unless "
        "--by is given.",
    )
    parser.add_argument("roots", nargs="+", metavar="ROOT", help="folders holding run directories (a sweep, runs/)")
    parser.add_argument("--by", default="", help="group by these comma-separated keys (task.head.variant,seed ...)")
    parser.add_argument("--metrics", default="", help="comma-separated metrics (default: the task's main ones)")
    parser.add_argument("--baseline", default=None, help="key=value[,key=value] of the baseline group (default: first)")
    parser.add_argument("--eval", default=None, metavar="NAME", help="read each run's eval/NAME/metrics.json (vr eval)")
    parser.add_argument("--output", default=None, help="where the report goes (default: FIRST_ROOT/compare)")
    return parser


def compare(options: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import track

    from ..analysis.compare import compare_runs
    from ..analysis.report import legend, rich_table, unfinished_lines, write_report
    from ..analysis.runs import load_runs
    from ..run_dir import EVAL, METRICS

    console = Console()
    if not console.is_terminal:  # a pipe or a file: the whole table, unwrapped
        console = Console(width=max(console.width, 240))

    def progress(text: str) -> Callable[[list], object]:
        """A transient progress bar over a list (shown from 5 items on)."""
        return lambda items: track(items, description=text, console=console, transient=True, disable=len(items) < 5)

    metrics_name = str(EVAL / options.eval / METRICS) if options.eval else str(METRICS)
    runs = load_runs(options.roots, metrics_name, progress=progress("reading runs"))
    by, metrics = (list(filter(None, text.split(","))) for text in (options.by, options.metrics))
    comparison = compare_runs(runs, by, metrics, options.baseline)
    console.print(rich_table(comparison))
    for line in [*legend(comparison), *unfinished_lines(comparison.unfinished)]:
        console.print(line, highlight=False)
    output = Path(options.output) if options.output else Path(options.roots[0]) / "compare"
    written = write_report(comparison, options.roots, output, progress=progress("reading curves"))
    console.print(f"written: {', '.join(map(str, written))}; TensorBoard group means in {output}/<group>/")
    return 0


INSPECTIONS = {  # action: (what it draws, the default PNG)
    "feature-maps": ("the first maps after each chosen module, one row per module", "maps.png"),
    "filters": ("the first conv layer's kernels (and hand-made kernels applied to --image)", "filters.png"),
    "cam": ("a Grad-CAM heat map over the image for the top class (or --class-index)", "cam.png"),
}


def inspect_parser() -> ArgumentParser:
    parser = new_parser("inspect", "Look inside a CNN: feature maps, filters, Grad-CAM (PNG files).")
    actions = parser.add_subparsers(dest="action", required=True, metavar="{feature-maps,filters,cam}")
    for action, (description, output) in INSPECTIONS.items():
        sub = actions.add_parser(action, help=description, description=description)
        if action != "filters":
            sub.add_argument("image", help="the image to look at")
        add_model_source(sub)
        add_output(sub, output)
    maps, filters, cam = (actions.choices[action] for action in INSPECTIONS)
    maps.add_argument("--layers", default=None, help="comma-separated module names (default: the stages)")
    maps.add_argument("--count", type=int, default=16, help="maps shown per module (default: 16)")
    filters.add_argument("--image", default=None, help="also apply the hand-made kernels to this image (grey)")
    cam.add_argument("--target-layer", default=None, help="the module Grad-CAM reads (default: the last stage)")
    cam.add_argument("--class-index", type=int, default=None, help="the class to explain (default: the top one)")
    return parser


def inspect(options: argparse.Namespace) -> int:
    from ..analysis import inspect

    model, spec = inspect.load_model(options.model, options.ckpt_path, options.pretrained)
    if options.action == "filters":
        grey = inspect.load_grey(options.image) if options.image else None
        figure = inspect.plot_filters(inspect.first_layer_filters(model), grey)
    elif options.action == "feature-maps":
        if options.count < 1:
            raise ConfigError(f"vr inspect: --count must be at least 1; got {options.count}")
        image = inspect.prepare_image(options.image, spec)[0]
        layers = options.layers.split(",") if options.layers else None
        figure = inspect.plot_feature_maps(inspect.feature_maps(model, image, layers, options.count))
    else:
        image, picture = inspect.prepare_image(options.image, spec)
        heat, index = inspect.grad_cam(model, image, options.target_layer, options.class_index)
        figure = inspect.plot_cam(picture, heat, f"Grad-CAM, class {index}")
    print(f"{options.action}: {inspect.save_figure(figure, options.output)}")
    if options.ckpt_path and (run := inspect.log_to_run(options.ckpt_path, f"inspect/{options.action}", figure)):
        print(f"{options.action}: logged to TensorBoard in {run}")
    return 0


def seeded(seed: int) -> Any:
    """Seed torch's global generator (a model's random weights) and return a generator of its own for the rest."""
    import torch

    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def note_random_weights(command: str, model: str, pretrained: str | None, example: str) -> None:
    """Say on stderr that ``model`` ran with random weights when no ``pretrained`` weights were given."""
    if pretrained is None:
        print(
            f"vr {command}: note: {model} had random weights (no --pretrained); the picture needs ImageNet weights "
            f"to look like anything (e.g. --pretrained {example})",
            file=sys.stderr,
        )


def dream_parser() -> ArgumentParser:
    parser = new_parser("dream", "DeepDream: amplify what chosen layers see in an image (a PNG).")
    parser.add_argument("image", help="the image to dream on")
    parser.add_argument("--layer", default=None, help="comma-separated module names (default: the middle stage)")
    add_model_source(parser, "googlenet, an Inception")
    parser.add_argument("--size", type=int, default=None, help="the longer side in pixels (default: the model's)")
    parser.add_argument("--octaves", type=int, default=3, help="scales processed, smallest first (default: 3)")
    parser.add_argument("--octave-scale", type=float, default=1.4, help="size ratio of two octaves (default: 1.4)")
    parser.add_argument("--steps", type=int, default=10, help="gradient-ascent steps per octave (default: 10)")
    parser.add_argument("--step-size", type=float, default=0.02, help="mean pixel change per step (default: 0.02)")
    parser.add_argument("--jitter", type=int, default=32, help="largest random shift in pixels (default: 32)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the jitter and random weights (default: 0)")
    add_output(parser, "dream.png")
    return parser


def dream(options: argparse.Namespace) -> int:
    """DeepDream (Mordvintsev et al. 2015) written as a PNG."""
    from ..analysis import inspect
    from ..analysis.dream import deep_dream

    generator = seeded(options.seed)
    name = options.model or (None if options.ckpt_path else "googlenet")
    model, spec = inspect.load_model(name, options.ckpt_path, options.pretrained)
    stages = inspect.stage_layers(model)
    layers = options.layer.split(",") if options.layer else [stages[len(stages) // 2]]
    if options.size is not None and options.size < 1:
        raise ConfigError(f"vr dream: --size must be at least 1; got {options.size}")
    image = inspect.prepare_image(options.image, spec, options.size or max(spec.size))[0]
    dreamed = deep_dream(
        model,
        image,
        layers,
        options.octaves,
        options.octave_scale,
        options.steps,
        options.step_size,
        options.jitter,
        generator,
        inspect.pixel_bounds(spec),
    )
    written = inspect.save_image(dreamed, spec, options.output)
    print(f"dream: {written}")
    if options.ckpt_path and (run := inspect.log_to_run(options.ckpt_path, "inspect/dream", written)):
        print(f"dream: logged to TensorBoard in {run}")
    if name is not None:
        note_random_weights("dream", name, options.pretrained, "torchvision:GoogLeNet_Weights.IMAGENET1K_V1")
    return 0


def style_parser() -> ArgumentParser:
    parser = new_parser("style", "Neural style transfer (Gatys et al. 2016): CONTENT in STYLE (a PNG).")
    parser.add_argument("content", help="the image whose content is kept")
    parser.add_argument("style", help="the image whose style is taken")
    add_output(parser, "style.png")
    parser.add_argument("--size", type=int, default=256, help="longer side of both images in pixels (default: 256)")
    parser.add_argument("--steps", type=int, default=300, help="optimisation steps (default: 300)")
    parser.add_argument("--optimizer", default="lbfgs", help="lbfgs (the paper's, default) or adam")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: adam 0.1, lbfgs 1)")
    parser.add_argument("--content-weight", type=float, default=1.0, help="α of eq. 7 (default: 1)")
    parser.add_argument("--style-weight", type=float, default=1e6, help="β of eq. 7 (default: 1e6)")
    parser.add_argument("--tv-weight", type=float, default=0.0, help="total-variation weight (default: 0)")
    parser.add_argument("--model", default="vgg19", help="a registered model (default: vgg19, the paper's)")
    parser.add_argument("--pretrained", default=None, help="weights for --model: a file or torchvision:/timm: tag")
    parser.add_argument(
        "--style-layers",
        default=None,
        help="comma-separated (VGG: conv1_1,conv2_1,conv3_1,conv4_1,conv5_1; others: their stages, by module name)",
    )
    parser.add_argument("--content-layer", default=None, help="(VGG: conv5_2; others: the last stage)")
    parser.add_argument("--pooling", default=None, help="VGG's pooling: avg (the paper's, default) or max")
    parser.add_argument("--init", default="content", help="the starting image: content (default) or noise")
    parser.add_argument("--seed", type=int, default=0, help="seeds the noise and random weights (default: 0)")
    return parser


def style(options: argparse.Namespace) -> int:
    """Neural style transfer (Gatys et al. 2016) written as a PNG."""
    from ..analysis import inspect
    from ..analysis.style import StyleFeatures, StyleTransferLoss, style_transfer

    if options.size < 1:
        raise ConfigError(f"vr style: --size must be at least 1; got {options.size}")
    generator = seeded(options.seed)
    model, spec = inspect.load_model(options.model, pretrained=options.pretrained)
    style_layers = options.style_layers.split(",") if options.style_layers else None
    features = StyleFeatures(model, style_layers, options.content_layer, options.pooling)
    content = inspect.prepare_image(options.content, spec, options.size)[0]
    style = inspect.prepare_image(options.style, spec, options.size)[0]
    weights = (options.content_weight, options.style_weight, options.tv_weight)
    loss = StyleTransferLoss(features, content, style, *weights)
    bounds = inspect.pixel_bounds(spec)
    result = style_transfer(
        loss, content, options.steps, options.optimizer, options.lr, options.init, bounds, generator
    )
    print(f"style: {inspect.save_image(result, spec, options.output)}")
    note_random_weights("style", options.model, options.pretrained, "torchvision:VGG19_Weights.IMAGENET1K_V1")
    return 0


COMPARE = parser_command("compare", compare_parser, compare)
INSPECT = parser_command("inspect", inspect_parser, inspect)
DREAM = parser_command("dream", dream_parser, dream)
STYLE = parser_command("style", style_parser, style)
