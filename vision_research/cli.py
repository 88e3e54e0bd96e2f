"""The ``vr`` command: ``vr <subcommand> [Hydra overrides or options]``.

Mistakes in the command line (an unknown model, config key or datamodule) end in one ``error:`` line that
names what was wrong and what was probably meant — never a Hydra or Lightning traceback.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .config_tree import config_dir, flat_keys, missing_keys
from .errors import ConfigError, VisionResearchError, close_matches
from .paths import check_can_create, path_safe


def register_resolvers() -> None:
    """``${path_safe:...}`` for the run-directory names in configs/train.yaml (``timm:resnet18``, ``root=/a/b``)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("path_safe"):
        OmegaConf.register_new_resolver("path_safe", path_safe)


register_resolvers()

# Lightning 2.6 calls a torch pytree API that torch 2.14 deprecates; the warning is not the user's concern.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
# bf16-mixed is the default precision on this kind of CPU; Lightning's model summary then says it sizes in fp32.
warnings.filterwarnings("ignore", message="Precision bf16-mixed is not supported by the model summary")
# A new run never starts in a directory holding checkpoints (train.check_fresh_run_dir); a resumed one does on purpose.
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")

TRAIN_SCRIPT = Path(__file__).resolve().parent / "launch" / "train.py"
HYDRA_FLAGS_WITH_VALUE = {
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--info",
    "--experimental-rerun",
}
USAGE = """usage: vr <command> [arguments]

commands:
  train     train a model; Hydra overrides follow (vr train model=lenet5_modern trainer.max_epochs=5),
            -m/--multirun sweeps over comma-separated values (vr train -m model=lenet5,lenet5_modern seed=1,2),
            resume=RUN_DIR continues a killed or finished run (vr train resume=runs/... trainer.max_epochs=40)
  models    list the registered models with parameters and GFLOPs (vr models 'lenet*' [--no-flops])
  predict   run a checkpoint on images: vr predict ckpt_path=runs/.../checkpoints/last.ckpt input=photos/
            [output=DIR] [batch_size=16] [backend=eager|fused|compile|onnxruntime|int8|auto] (segmentation:
            palette PNGs; detection: COCO JSON + drawn boxes; classification: predictions.csv)
  eval      evaluate a checkpoint on its run's test (or val) split, or on other data, into <run>/eval/<split>-<data>/
            (metrics.json, config.yaml): vr eval ckpt_path=runs/.../checkpoints/last.ckpt [split=test|val]
            [data=NAME] [data.KEY=VALUE ...] [output=DIR] [backend=fused|compile|onnxruntime|int8|auto
            [calibration_images=256]]: also scored eagerly, with each metric's change (int8's accuracy drop)
  export    a checkpoint as ONNX, TorchScript or a torch.export program, checked against the eager model, with a
            JSON sidecar (inputs, normalisation, classes, outputs): vr export ckpt_path=runs/.../last.ckpt
            format=onnx|torchscript|exported_program [dtype=fp32|bf16|fp16] [dynamic_batch=true] [opset=18]
            [output=PATH] [tolerance=1e-4]
  convert   convert annotations between VOC, COCO and YOLO
            (vr convert voc coco VOCdevkit/VOC2012 out/ --set train; vr convert --help)
  data      dataset statistics: vr data stats ROOT [--format auto|coco|voc|yolo] [--set train] [--plot stats.png]
  benchmark inference and training speed (img/s, step-time percentiles), GFLOPs and peak memory of models;
            --compare torchvision|timm measures the reference implementation in the same run
            (vr benchmark resnet18 --compare torchvision; vr benchmark 'resnet*' --csv out.csv; vr benchmark --help);
            --backend eager compile onnxruntime int8: one model's inference backends at batch 1 and 16, GFLOP/s
            against this machine's matrix-multiply peak
  compare   compare the runs under folders (a sweep): groups by the overrides that differ, mean ± std over seeds,
            the difference to a baseline group with Welch's 95 % interval, curves.png, TensorBoard group means
            (vr compare runs/sweeps/<date> [--by key,key] [--metrics m,m] [--baseline key=value]; vr compare --help)
  inspect   look inside a CNN, as PNGs: feature maps after chosen modules, the first conv's filters (and hand-made
            edge/blur kernels with --image), Grad-CAM heat maps (vr inspect cam photo.jpg --model resnet18
            [--target-layer layer4] [--class-index C]; vr inspect feature-maps IMAGE --ckpt last.ckpt [--layers a,b];
            vr inspect --help)
  dream     DeepDream: amplify what chosen layers see in an image, as a PNG (vr dream photo.jpg --layer inception4c
            [--model googlenet --pretrained TAG] [--octaves 3] [--steps 10] --out dream.png; vr dream --help)
  style     neural style transfer (Gatys et al.), as a PNG (vr style content.jpg style.jpg --out result.png
            [--pretrained torchvision:VGG19_Weights.IMAGENET1K_V1] [--size 256] [--optimizer lbfgs|adam];
            vr style --help)

Run directories go to runs/ (TensorBoard: tensorboard --logdir runs)."""


def search_path(args: list[str]) -> list[str]:
    """The config folders a command line adds to the packaged tree, as Hydra search-path entries: Hydra's
    ``--config-dir DIR`` (``-cd DIR``) and the entries of a ``hydra.searchpath=[...]`` override."""
    entries = []
    for flag, value in zip(args, args[1:], strict=False):
        if flag in ("--config-dir", "-cd"):
            entries.append(f"file://{Path(value).expanduser().resolve()}")
    for arg in args:
        key, _, value = arg.partition("=")
        if key in ("--config-dir", "-cd") and value:
            entries.append(f"file://{Path(value).expanduser().resolve()}")
        elif key == "hydra.searchpath":
            entries.extend(e.strip().strip("'\"") for e in value.strip("[]").split(",") if e.strip())
    return entries


def _config_groups(extra: list[str] = ()) -> dict[str, list[str]]:
    """Each config group's options, in the packaged tree and the ``file://`` folders of ``extra``."""
    roots = [config_dir(), *(Path(e.removeprefix("file://")) for e in extra if not e.startswith("pkg://"))]
    groups: dict[str, set[str]] = {}
    for root in roots:
        for folder in (d for d in root.glob("*") if d.is_dir()):
            groups.setdefault(folder.name, set()).update(p.stem for p in folder.glob("*.yaml"))
    return {group: sorted(options) for group, options in groups.items()}


def _overrides_only(args: list[str]) -> list[str]:
    """The Hydra overrides among ``args`` (flags such as -m or --cfg job are left out)."""
    overrides, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in HYDRA_FLAGS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            overrides.append(arg)
    return overrides


def _wants_help(args: list[str]) -> bool:
    """``-h`` or ``--help`` among ``args``: print the usage before doing (or importing) anything else."""
    return any(arg in ("-h", "--help") for arg in args)


def _print_usage(command: str, synopsis: str, *details: str) -> int:
    """Print ``usage: vr COMMAND SYNOPSIS``, the command's lines of ``USAGE`` and ``details``; return 0."""
    lines = USAGE.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {command} "))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith(" " * 12)), len(lines))
    summary = [line[12:] for line in lines[start:end]]
    print("\n".join([f"usage: vr {command} {synopsis}", "", *summary, *details]))
    return 0


def _explain_hydra_error(message: str, base_keys: list[str], extra: list[str] = ()) -> str:
    """Turn Hydra's composition error into one line with close matches (``extra``: added config folders)."""
    groups = _config_groups(extra)
    missing_group = re.search(r"Could not find '([\w/]+)/([^']+)'", message)
    if missing_group and missing_group.group(1) in groups:
        group, option = missing_group.groups()
        matches = close_matches(option, groups[group]) or groups[group]
        return f"unknown {group} '{option}' (configs/{group}/). Did you mean: {', '.join(matches)}?"
    # Hydra plugin groups (hydra/launcher, hydra/sweeper): their options come from configs/hydra/ and the plugins.
    plugins = "Hydra's joblib, submitit and optuna plugins install with pip install -e '.[cluster]'"
    listed = re.search(r"Could not find '(hydra/\w+)/([^']+)'\s+Available options in '\1':\n((?:\t.*\n)*)", message)
    if listed:
        group, option, options = listed.group(1), listed.group(2), listed.group(3).split()
        matches = close_matches(option, options) or options
        return f"unknown {group} '{option}'. Did you mean: {', '.join(matches)}? ({plugins})"
    unloaded = re.search(r"Could not load '(hydra/\w+)/([^']+)'", message)
    if unloaded:  # one of our configs/hydra/ options names a plugin that is not installed
        return f"{unloaded.group(1)} '{unloaded.group(2)}' is not installed ({plugins})"
    missing_key = re.search(r"Could not override '([^']+)'", message) or re.search(
        r"Key '([^']+)' is not in struct", message
    )
    if missing_key:
        key = missing_key.group(1)
        matches = close_matches(key, base_keys) or close_matches(key.split(".")[-1], base_keys)
        hint = f" Did you mean: {', '.join(matches)}?" if matches else ""
        return f"unknown config key '{key}'.{hint} (Add a new key with +{key}=...)"
    return message.strip().splitlines()[0] if message.strip() else "invalid override"


def _check_missing_values(composed: object, choices: Callable[[], Mapping[str, Any]]) -> None:
    """A mandatory value (``???``) left out is an error that names the config group option that asks for it
    (``data.root is required for data=coco``); ``choices`` gives Hydra's group choices, composed only then."""
    missing = [key for key in missing_keys(composed) if not key.startswith("hydra.")]
    if not missing:
        return
    key, chosen = missing[0], choices()
    parts = key.split(".")
    groups = ("/".join(parts[:n]) for n in range(len(parts) - 1, 0, -1))
    group = next((g for g in groups if chosen.get(g) is not None), None)
    raise ConfigError(f"{key} is required" + (f" for {group}={chosen[group]}" if group else ""))


def _override_values(override: Any) -> list[str]:
    """The values to compose a parsed override with: its value, each value of a choice or range sweep, or the two
    ends of an interval (which Hydra's Optuna sweeper samples between)."""
    if override.is_interval_sweep():
        return [str(override.value().start), str(override.value().end)]
    if override.is_sweep_override():
        return list(override.sweep_string_iterator())
    return [override.get_value_element_as_str()]


def validate_overrides(overrides: list[str], config_name: str = "train", extra: list[str] = ()) -> None:
    """Compose the config once per value of each sweep, with the config folders of ``extra`` (search-path entries)
    added; raise ``ConfigError`` on the first mistake."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise ConfigError(f"cannot parse the overrides: {str(err).splitlines()[0]}") from None
    # One value per sweep gives the base; then each further value of each sweep on its own.
    base = [f"{o.get_key_element()}={_override_values(o)[0]}" for o in parsed]
    variants = [base]
    for i, override in enumerate(parsed):
        for value in _override_values(override)[1:]:
            variants.append([*base[:i], f"{override.get_key_element()}={value}", *base[i + 1 :]])
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        defaults = compose(config_name=config_name)
        base_keys = flat_keys(defaults)
        for variant in variants:
            job_overrides = [o for o in variant if not o.startswith("hydra.")]
            if extra:
                job_overrides.append(f"hydra.searchpath=[{','.join(extra)}]")
            try:
                composed = compose(config_name=config_name, overrides=job_overrides)
            except HydraException as err:
                raise ConfigError(_explain_hydra_error(str(err), base_keys, extra)) from None
            _check_value_types(parsed, defaults, composed)
            # Composing with the hydra node leaves Hydra's run-time state set for the job that follows (its sweep
            # subdir then fails to resolve), so the group choices are composed only for the error message.
            _check_missing_values(
                composed,
                lambda overrides=job_overrides: (
                    compose(
                        config_name=config_name, overrides=overrides, return_hydra_config=True
                    ).hydra.runtime.choices
                ),
            )
    GlobalHydra.instance().clear()


def check_output_folders(overrides: list[str]) -> None:
    """The folders a run or sweep will write can be made (Hydra would fail with a traceback): those given as
    ``hydra.run.dir`` / ``hydra.sweep.dir`` / ``paths.runs_dir`` overrides, else the default ``runs`` folder."""
    given = dict(o.split("=", 1) for o in overrides if "=" in o)
    keys = [k for k in ("hydra.run.dir", "hydra.sweep.dir", "paths.runs_dir") if k in given]
    for key in keys or ["paths.runs_dir"]:
        folder = given.get(key, "runs").strip("'\"")
        if "${" not in folder:
            check_can_create(folder, key)


def _check_value_types(parsed: list, defaults: object, composed: object) -> None:
    """A number overridden with something else (``trainer.max_epochs=abc``) is an error."""
    from omegaconf import OmegaConf

    for override in parsed:
        key = override.get_key_element().lstrip("+~")
        default = OmegaConf.select(defaults, key, default=None)
        value = OmegaConf.select(composed, key, default=None)
        if isinstance(default, bool) or not isinstance(default, int | float) or value is None:
            continue
        wanted = int if isinstance(default, int) else int | float
        if isinstance(value, bool) or not isinstance(value, wanted):
            kind = "an integer" if wanted is int else "a number"
            raise ConfigError(f"{key}={value!r}: expected {kind} (the default is {default!r})")


def _check_launch() -> None:
    """Processes started by torchrun or srun need one run (or sweep) directory for all ranks; the tasks of one
    submitit job (hydra/launcher=slurm) share theirs already."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    external = max(int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("SLURM_STEP_NUM_TASKS", 1)))
    key = "hydra.run.dir" if hydra_cfg.mode == RunMode.RUN else "hydra.sweep.dir"
    if (
        external > 1
        and not os.environ.get("SUBMITIT_EXECUTOR")
        and not any(o.startswith(f"{key}=") for o in hydra_cfg.overrides.hydra)
    ):
        raise ConfigError(
            f"this is one of {external} processes started by torchrun/srun, which must share one run directory: "
            f"add {key}=runs/<name> (the default name holds the start time, which differs between processes)"
        )


def error_message(err: BaseException) -> str:
    """The message of one of our errors, without the worker traceback a DataLoader worker process wraps it in
    ("Caught DataError in DataLoader worker process 0. Original Traceback ...")."""
    message = str(err)
    if "Original Traceback" in message:
        last = [line for line in message.splitlines() if line.strip()][-1]
        message = re.sub(rf"^[\w.]*\b{type(err).__name__}: ", "", last)
    return message


def metrics_line(metrics: dict[str, float], prefixes: tuple[str, ...], signed: bool = False) -> str:
    """The figures whose names start with ``prefixes``, on one line (``signed``: with their sign, for changes);
    per-class ones (test/iou_<class>) stay in metrics.json and TensorBoard."""
    shown = {k: v for k, v in metrics.items() if k.startswith(prefixes) and "/iou_" not in k}
    style = "+.4f" if signed else ".4f"
    return "  " + "  ".join(f"{k} {v:{style}}" for k, v in sorted(shown.items()))


def _run_job(cfg: object) -> dict[str, Any] | float:
    """The body of one Hydra job: take this job's share of the cores, train, and turn our errors into one clean
    line. Returns the run's summary, or the value of ``optimized_metric`` when the config names one (for a
    sweeper such as Optuna's)."""
    from hydra.core.hydra_config import HydraConfig
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    from .sweeps import optimized_value, restore_start_method, share_cores
    from .train import train

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        _check_launch()
        restore_start_method()
        share_cores(cfg)
        summary = train(cfg, run_dir)
        objective = optimized_value(summary["metrics"], cfg.optimized_metric)
    except (VisionResearchError, MisconfigurationException) as err:
        print(f"error: {error_message(err)}", file=sys.stderr)
        raise SystemExit(2) from None
    if rank_zero_only.rank == 0:
        print(f"run: {run_dir} ({summary['seconds']:.1f} s, torch threads: {summary['threads']})")
        print(metrics_line(summary["metrics"], ("test/", "best/")))
    return summary if objective is None else objective


def cmd_train(args: list[str]) -> int:
    import hydra

    import __main__

    if _wants_help(args):
        groups = _config_groups(search_path(args)).items()
        groups = [f"  {group}: {', '.join(options)}" for group, options in sorted(groups) if options]
        return _print_usage(
            "train",
            "[-m] [KEY=VALUE ...]",
            "",
            "config groups (GROUP=OPTION):",
            *groups,
            "",
            "Your own config folder (GROUP/OPTION.yaml files beside the packaged ones): vr train --config-dir DIR ...",
            "vr train --cfg job prints the composed config; vr train --hydra-help lists Hydra's flags.",
        )
    from .resume import resume_arguments

    args = resume_arguments(args)
    if "--hydra-help" not in args:
        validate_overrides(_overrides_only(args), extra=search_path(args))
        check_output_folders(_overrides_only(args))
    job = hydra.main(config_path=str(config_dir()), config_name="train", version_base="1.3")(_run_job)
    # Lightning's DDP launcher re-runs `python sys.argv[0] sys.argv[1:]` (or `python -m <__main__'s module>`) for
    # the other ranks; the script that takes overrides without a subcommand is launch/train.py.
    sys.argv = [str(TRAIN_SCRIPT), *args]
    spec, __main__.__spec__ = getattr(__main__, "__spec__", None), None
    try:
        job()
    finally:
        __main__.__spec__ = spec
    return 0


def cmd_models(args: list[str]) -> int:
    """``vr models [PATTERN] [--no-flops]``: registered models, parameters, GFLOPs at the default input size."""
    parser = _argument_parser("vr models", "List the registered models: parameters, input size, GFLOPs, stages.")
    parser.add_argument("pattern", nargs="?", default="*", help="glob over the model names (default: all)")
    parser.add_argument("--no-flops", action="store_true", help="leave out the GFLOPs (faster)")
    options = parser.parse_args(args)

    from rich.console import Console
    from rich.table import Table

    from .analysis import model_summary
    from .models import count_parameters, create_model, list_models

    names = list_models(options.pattern)
    if not names:
        raise ConfigError(f"no registered model matches '{options.pattern}'")
    table = Table(title=f"vision_research models ({len(names)})", caption="GFLOPs: 2 × multiply-adds, one image")
    for column in ("model", "parameters", "input", "GFLOPs", "stages (channels @ reduction)"):
        table.add_column(column, justify="right" if column in ("parameters", "GFLOPs") else "left")
    for name in names:
        model = create_model(name)
        stages = ", ".join(f"{f['num_chs']}@{f['reduction']}" for f in model.feature_info)
        size = "×".join(str(s) for s in model.default_cfg["input_size"])
        gflops = "-" if options.no_flops else f"{model_summary(model).total_flops / 1e9:.2f}"
        table.add_row(name, f"{count_parameters(model):,}", size, gflops, stages)
    Console().print(table)
    return 0


def _argument_parser(prog: str, description: str):
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # one clean line, like every other CLI mistake
            raise ConfigError(f"{prog}: {message} (see {prog} --help)")

    return Parser(prog=prog, description=description)


def cmd_convert(args: list[str]) -> int:
    """``vr convert SRC_FORMAT DST_FORMAT SRC DST``: VOC ⇄ COCO ⇄ YOLO with a summary of what was skipped."""
    from .data.formats import DISCOVER, FORMATS, convert

    parser = _argument_parser("vr convert", "Convert annotations between Pascal VOC, COCO and YOLO txt layouts.")
    parser.add_argument("source_format", choices=FORMATS)
    parser.add_argument("destination_format", choices=FORMATS)
    parser.add_argument(
        "source", help="VOC root (Annotations/...), COCO instances JSON, or YOLO root (images/, labels/)"
    )
    parser.add_argument("destination", help="output folder")
    parser.add_argument("--set", default="train", help="VOC image set / YOLO sub-folder / COCO output name")
    parser.add_argument("--image-dir", default=None, help="images of a COCO file (default: found beside it)")
    parser.add_argument(
        "--class-names",
        default=None,
        help=f"comma-separated class names (YOLO without classes.txt; VOC label order), or {DISCOVER} "
        "(VOC: the sorted names found; default: the 20 VOC classes)",
    )
    options = parser.parse_args(args)
    names = options.class_names
    if names and names != DISCOVER:
        names = names.split(",")
    report = convert(
        options.source,
        options.source_format,
        options.destination,
        options.destination_format,
        image_set=options.set,
        image_dir=options.image_dir,
        class_names=names,
        progress=True,
    )
    print(report.summary())
    print(f"written to {options.destination}")
    return 0


def cmd_data(args: list[str]) -> int:
    """``vr data stats ROOT [--plot FILE]``: class counts, boxes per image, box sizes, image sizes (histograms
    with ``--plot``)."""
    parser = _argument_parser("vr data", "Dataset tools.")
    parser.add_argument("action", choices=["stats"])
    parser.add_argument("root", help="COCO JSON or a folder with annotations/*.json, a VOC root, or a YOLO root")
    parser.add_argument("--format", default="auto", choices=["auto", "coco", "voc", "yolo"])
    parser.add_argument("--set", default=None, help="VOC image set or YOLO sub-folder (default: everything)")
    parser.add_argument("--plot", default=None, metavar="FILE", help="write the histograms to this PNG")
    options = parser.parse_args(args)

    from rich.console import Console
    from rich.table import Table

    from .data.stats import dataset_stats, load_for_stats, plot_stats

    stats = dataset_stats(load_for_stats(options.root, options.format, options.set))
    console = Console()
    per_image = stats.boxes_per_image
    console.print(
        f"{stats.images} images, {stats.objects} objects ({stats.crowd} crowd, {stats.difficult} difficult); "
        f"boxes per image: min {per_image.min(initial=0)}, mean {per_image.mean() if per_image.size else 0:.2f}, "
        f"max {per_image.max(initial=0)}; images without objects: {int((per_image == 0).sum())}"
    )
    sizes = stats.size_groups
    console.print("box sizes (COCO): " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    shown = ", ".join(f"{w}×{h} ({n})" for (w, h), n in stats.image_sizes.most_common(5))
    console.print(f"image sizes: {len(stats.image_sizes)} distinct; most common: {shown}")
    table = Table(title="objects per class")
    table.add_column("class")
    table.add_column("objects", justify="right")
    for name, count in sorted(stats.class_counts.items(), key=lambda item: -item[1]):
        table.add_row(name, str(count))
    console.print(table)
    if options.plot:
        console.print(f"histograms: {plot_stats(stats, options.plot)}")
    return 0


def cmd_benchmark(args: list[str]) -> int:
    """``vr benchmark MODEL [MODEL ...]``: img/s, step-time percentiles, GFLOPs and peak memory; ``--compare``."""
    import argparse
    import dataclasses

    from rich.console import Console

    from .benchmark import (
        LIBRARIES,
        MODES,
        PRECISION_ALIASES,
        PRECISIONS,
        BenchmarkSettings,
        benchmark_models,
        parameter_notes,
        rich_table,
        settings_text,
        write_csv,
        write_markdown,
    )
    from .inference import BACKENDS

    parser = _argument_parser(
        "vr benchmark",
        "Measure inference and training throughput, step-time percentiles, GFLOPs and peak memory of models; "
        "with --compare, the reference library's implementation too, in alternating rounds.",
    )
    parser.add_argument("models", nargs="+", metavar="MODEL", help="registered name, glob ('resnet*') or timm:<name>")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--image-size", "--img-size", type=int, default=None, help="square input side (default: the model's own)"
    )
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--mode", choices=MODES, default="both")
    precisions = [*PRECISIONS, "auto", *PRECISION_ALIASES]
    parser.add_argument("--precision", default="auto", help=f"one of {', '.join(precisions)} (default: auto)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--compile", action="store_true", help="model.compile() (in place) before measuring")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per mode and model (default: 3)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round (default: 10)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (default: 3); img/s is their median")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: unchanged)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if available")
    parser.add_argument("--compare", choices=LIBRARIES, default=None, help="also measure the reference model")
    parser.add_argument("--csv", default=None, help="write one row per model and implementation")
    parser.add_argument("--markdown", default=None, help="write the settings and a GitHub table")
    parser.add_argument(
        "--backend",
        nargs="+",
        choices=list(BACKENDS),
        default=None,
        help="measure one model's inference on these backends (and eager) instead: "
        + "; ".join(f"{name}: {text}" for name, text in BACKENDS.items()),
    )
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[1, 16], help="with --backend: the batch sizes (default: 1 16)"
    )
    options = parser.parse_args(args)
    # The options are named after the settings' fields (batch_size, precision, ...).
    fields = {f.name for f in dataclasses.fields(BenchmarkSettings)}
    settings = BenchmarkSettings(**{k: v for k, v in vars(options).items() if k in fields}).resolved()
    console = Console()
    if not console.is_terminal:  # a pipe or a file: the whole table, unwrapped, for pasting
        console = Console(width=max(console.width, 200))
    if options.backend:
        return _benchmark_backends(options, settings, console)
    results = benchmark_models(
        options.models, settings, options.compare, progress=lambda text: console.print(f"[dim]{text}[/dim]")
    )
    console.print(settings_text(settings))
    console.print(rich_table(results, settings))
    for note in parameter_notes(results):
        console.print(note)
    if options.csv:
        console.print(f"csv: {write_csv(results, options.csv)}")
    if options.markdown:
        console.print(f"markdown: {write_markdown(results, settings, options.markdown)}")
    return 0


def _benchmark_backends(options: Any, settings: Any, console: Any) -> int:
    """``vr benchmark MODEL --backend ...``: the report of :func:`vision_research.benchmark.benchmark_backends`."""
    from .benchmark import backend_markdown, backend_rich_table, backend_settings_text, benchmark_backends

    conflicts = [flag for flag, used in (("--compare", options.compare), ("--compile", options.compile)) if used]
    if options.mode == "train":
        conflicts.append("--mode train")
    if conflicts or options.csv:
        raise ConfigError(f"--backend measures inference backends; drop {', '.join(conflicts or ['--csv'])}")
    if len(options.models) != 1 or any(c in options.models[0] for c in "*?["):
        raise ConfigError(f"--backend measures one model; got {' '.join(options.models)}")
    if min(options.batch_sizes) < 1:
        raise ConfigError(f"--batch-sizes must be positive integers; got {options.batch_sizes}")
    report = benchmark_backends(
        options.models[0],
        options.backend,
        options.batch_sizes,
        settings,
        progress=lambda text: console.print(f"[dim]{text}[/dim]"),
    )
    console.print(backend_settings_text(report))
    console.print(backend_rich_table(report))
    if options.markdown:
        path = Path(options.markdown)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(backend_markdown(report))
        console.print(f"markdown: {path}")
    return 0


def cmd_compare(args: list[str]) -> int:
    """``vr compare ROOT [ROOT ...]``: group runs, seed statistics against a baseline, curves, TensorBoard means."""
    parser = _argument_parser(
        "vr compare",
        "Compare the runs under one or more folders: groups by the overrides that differ (the seed excepted), "
        "mean ± std per group, Welch's 95 % interval of the difference to a baseline group, learning curves.",
    )
    parser.add_argument("roots", nargs="+", metavar="ROOT", help="folders holding run directories (a sweep, runs/)")
    parser.add_argument("--by", default="", help="group by these comma-separated keys (task.head.variant,seed ...)")
    parser.add_argument("--metrics", default="", help="comma-separated metrics (default: the task's main ones)")
    parser.add_argument("--baseline", default=None, help="key=value[,key=value] of the baseline group (default: first)")
    parser.add_argument("--eval", default=None, metavar="NAME", help="read each run's eval/NAME/metrics.json (vr eval)")
    parser.add_argument("--output", default=None, help="where the report goes (default: FIRST_ROOT/compare)")
    options = parser.parse_args(args)

    from rich.console import Console
    from rich.progress import track

    from .analysis.compare import compare_runs
    from .analysis.report import legend, rich_table, unfinished_lines, write_report
    from .analysis.runs import load_runs

    console = Console()
    if not console.is_terminal:  # a pipe or a file: the whole table, unwrapped
        console = Console(width=max(console.width, 240))

    def progress(text: str) -> Callable[[list], object]:
        """A transient progress bar over a list (shown from 5 items on)."""
        return lambda items: track(items, description=text, console=console, transient=True, disable=len(items) < 5)

    metrics_name = f"eval/{options.eval}/metrics.json" if options.eval else "metrics.json"
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


PREDICT_KEYS: dict[str, str | None] = {
    "ckpt_path": None,
    "input": None,
    "output": "",
    "batch_size": "16",
    "backend": "eager",
}
EVAL_KEYS: dict[str, str | None] = {
    "ckpt_path": None,
    "split": "test",
    "data": "",
    "output": "",
    "backend": "eager",
    "calibration_images": "256",
}


def _positive_integer(options: dict[str, str], key: str, command: str) -> int:
    """``options[key]`` as an integer ≥ 1, else a one-line error."""
    if not options[key].isdigit() or int(options[key]) < 1:
        raise ConfigError(f"vr {command}: {key} must be a positive integer; got '{options[key]}'")
    return int(options[key])


def _key_value_synopsis(allowed: dict[str, str | None]) -> str:
    """``ckpt_path=... [split=test]``: the required keys, then the optional ones with their defaults."""
    return " ".join(f"{k}=..." if default is None else f"[{k}={default or '...'}]" for k, default in allowed.items())


def _key_values(args: list[str], allowed: dict[str, str | None], command: str) -> dict[str, str]:
    """``key=value`` arguments; unknown keys get close matches, missing required ones (None default) an error."""
    values: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or key not in allowed:
            matches = close_matches(key, allowed)
            hint = f" Did you mean: {', '.join(matches)}?" if matches else f" Keys: {', '.join(allowed)}"
            raise ConfigError(f"vr {command}: expected key=value with a known key; got '{arg}'.{hint}")
        values[key] = value
    required = [k for k, default in allowed.items() if default is None]
    missing = [k for k in required if k not in values]
    if missing:
        example = " ".join(f"{k}=..." for k in required)
        raise ConfigError(f"vr {command}: {', '.join(missing)} missing (e.g. vr {command} {example})")
    return {**{k: v for k, v in allowed.items() if v is not None}, **values}


def cmd_predict(args: list[str]) -> int:
    """``vr predict ckpt_path=... input=... [output=...] [batch_size=16] [backend=eager|fused|compile|...|auto]``."""
    if _wants_help(args):
        return _print_usage("predict", _key_value_synopsis(PREDICT_KEYS))

    from .predict import predict

    options = _key_values(args, PREDICT_KEYS, "predict")
    batch_size = _positive_integer(options, "batch_size", "predict")
    output = predict(
        options["ckpt_path"], options["input"], options["output"] or None, batch_size, backend=options["backend"]
    )
    print(f"predictions written to {output}")
    return 0


def cmd_eval(args: list[str]) -> int:
    """``vr eval ckpt_path=... [split=test|val] [data=NAME] [data.KEY=VALUE ...] [output=DIR] [backend=...]``."""
    if _wants_help(args):
        return _print_usage("eval", f"{_key_value_synopsis(EVAL_KEYS)} [data.KEY=VALUE ...]")

    import logging

    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from .evaluate import evaluate

    data_overrides = [a.removeprefix("data.") for a in args if a.startswith("data.")]
    options = _key_values([a for a in args if not a.startswith("data.")], EVAL_KEYS, "eval")
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    lightning_log.setLevel(logging.WARNING)  # no GPU/TPU notices and tips around the summary
    calibration_images = _positive_integer(options, "calibration_images", "eval")
    try:
        summary = evaluate(
            options["ckpt_path"],
            options["split"],
            options["data"] or None,
            data_overrides,
            options["output"] or None,
            backend=options["backend"],
            calibration_images=calibration_images,
        )
    except MisconfigurationException as err:
        raise ConfigError(str(err).strip().splitlines()[0]) from None
    finally:
        lightning_log.setLevel(level)
    print(f"eval: {summary['output']} ({summary['seconds']:.1f} s)")
    prefixes = (f"{summary['split']}/",)
    if "eager_metrics" in summary:
        print(f"eager ({summary['eager_scoring_seconds']:.1f} s):")
        print(metrics_line(summary["eager_metrics"], prefixes))
        print(f"{summary['backend']} ({summary['scoring_seconds']:.1f} s):")
    print(metrics_line(summary["metrics"], prefixes))
    if "change" in summary:
        print(f"{summary['backend']} − eager:")
        print(metrics_line(summary["change"], prefixes, signed=True))
    return 0


EXPORT_KEYS: dict[str, str | None] = {
    "ckpt_path": None,
    "format": None,
    "dtype": "fp32",
    "dynamic_batch": "false",
    "opset": "",
    "output": "",
    "tolerance": "",
}


def _parsed(options: dict[str, str], key: str, kind: type, what: str) -> Any:
    """``options[key]`` as ``kind``, None when empty; a value that does not parse is an error."""
    if not options[key]:
        return None
    try:
        return kind(options[key])
    except ValueError:
        raise ConfigError(f"vr export: {key} must be {what}; got '{options[key]}'") from None


def cmd_export(args: list[str]) -> int:
    """``vr export ckpt_path=... format=... [dtype=fp32] [dynamic_batch=false] [opset=N] [output=PATH]``."""
    if _wants_help(args):
        return _print_usage("export", _key_value_synopsis(EXPORT_KEYS))

    from .export import export

    options = _key_values(args, EXPORT_KEYS, "export")
    if options["dynamic_batch"].lower() not in ("true", "false"):
        raise ConfigError(f"vr export: dynamic_batch must be true or false; got '{options['dynamic_batch']}'")
    report = export(
        options["ckpt_path"],
        options["format"],
        options["output"] or None,
        options["dtype"],
        options["dynamic_batch"].lower() == "true",
        _parsed(options, "opset", int, "an integer"),
        _parsed(options, "tolerance", float, "a number"),
    )
    opset = f", opset {report.opset}" if report.opset is not None else ""
    print(f"export: {report.path} ({report.format}, {report.dtype}{opset})")
    print(f"sidecar: {report.sidecar}")
    check = report.metadata["verification"]
    print(
        f"max abs difference to the eager model: {report.max_abs_diff:.3g} on {check['images']} images "
        f"(tolerance {report.tolerance:g}, {check['runtime']})"
    )
    return 0


def cmd_inspect(args: list[str]) -> int:
    """``vr inspect feature-maps|filters|cam ...``: feature maps, first-layer filters, Grad-CAM heat maps as PNGs."""
    parser = _argument_parser("vr inspect", "Look inside a CNN: feature maps, filters, Grad-CAM (PNG files).")
    actions = parser.add_subparsers(dest="action", required=True, metavar="{feature-maps,filters,cam}")
    commands = {
        "feature-maps": ("the first maps after each chosen module, one row per module", "maps.png"),
        "filters": ("the first conv layer's kernels (and hand-made kernels applied to --image)", "filters.png"),
        "cam": ("a Grad-CAM heat map over the image for the top class (or --class-index)", "cam.png"),
    }
    for action, (description, out) in commands.items():
        sub = actions.add_parser(action, help=description, description=description)
        if action != "filters":
            sub.add_argument("image", help="the image to look at")
        sub.add_argument("--model", default=None, help="a registered model (random weights unless --pretrained)")
        sub.add_argument("--pretrained", default=None, help="weights for --model: a file or torchvision:/timm: tag")
        sub.add_argument("--ckpt", default=None, help="a classification run's checkpoint (others: their backbone)")
        sub.add_argument("--out", default=out, help=f"the PNG to write (default: {out})")
    maps, filters, cam = (actions.choices[action] for action in commands)
    maps.add_argument("--layers", default=None, help="comma-separated module names (default: the stages)")
    maps.add_argument("--count", type=int, default=16, help="maps shown per module (default: 16)")
    filters.add_argument("--image", default=None, help="also apply the hand-made kernels to this image (grey)")
    cam.add_argument("--target-layer", default=None, help="the module Grad-CAM reads (default: the last stage)")
    cam.add_argument("--class-index", type=int, default=None, help="the class to explain (default: the top one)")
    options = parser.parse_args(args)

    from .analysis import inspect

    model, spec = inspect.load_model(options.model, options.ckpt, options.pretrained)
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
    print(f"{options.action}: {inspect.save_figure(figure, options.out)}")
    if options.ckpt and (run := inspect.log_to_run(options.ckpt, f"inspect/{options.action}", figure)):
        print(f"{options.action}: logged to TensorBoard in {run}")
    return 0


def _seeded(seed: int):
    """Seed torch's global generator (a model's random weights) and return a generator of its own for the rest."""
    import torch

    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _note_random_weights(command: str, model: str, pretrained: str | None, example: str) -> None:
    """Say on stderr that ``model`` ran with random weights when no ``pretrained`` weights were given."""
    if pretrained is None:
        print(
            f"vr {command}: note: {model} had random weights (no --pretrained); the picture needs ImageNet weights "
            f"to look like anything (e.g. --pretrained {example})",
            file=sys.stderr,
        )


def cmd_dream(args: list[str]) -> int:
    """``vr dream IMAGE --layer NAME[,NAME] ...``: DeepDream (Mordvintsev et al. 2015) written as a PNG."""
    parser = _argument_parser("vr dream", "DeepDream: amplify what chosen layers see in an image (a PNG).")
    parser.add_argument("image", help="the image to dream on")
    parser.add_argument("--layer", default=None, help="comma-separated module names (default: the middle stage)")
    parser.add_argument("--model", default=None, help="a registered model (default: googlenet, an Inception)")
    parser.add_argument("--pretrained", default=None, help="weights for --model: a file or torchvision:/timm: tag")
    parser.add_argument("--ckpt", default=None, help="a classification run's checkpoint (others: their backbone)")
    parser.add_argument("--size", type=int, default=None, help="the longer side in pixels (default: the model's)")
    parser.add_argument("--octaves", type=int, default=3, help="scales processed, smallest first (default: 3)")
    parser.add_argument("--octave-scale", type=float, default=1.4, help="size ratio of two octaves (default: 1.4)")
    parser.add_argument("--steps", type=int, default=10, help="gradient-ascent steps per octave (default: 10)")
    parser.add_argument("--step-size", type=float, default=0.02, help="mean pixel change per step (default: 0.02)")
    parser.add_argument("--jitter", type=int, default=32, help="largest random shift in pixels (default: 32)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the jitter and random weights (default: 0)")
    parser.add_argument("--out", default="dream.png", help="the PNG to write (default: dream.png)")
    options = parser.parse_args(args)

    from .analysis import inspect
    from .analysis.dream import deep_dream

    generator = _seeded(options.seed)
    name = options.model or (None if options.ckpt else "googlenet")
    model, spec = inspect.load_model(name, options.ckpt, options.pretrained)
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
    written = inspect.save_image(dreamed, spec, options.out)
    print(f"dream: {written}")
    if options.ckpt and (run := inspect.log_to_run(options.ckpt, "inspect/dream", written)):
        print(f"dream: logged to TensorBoard in {run}")
    if name is not None:
        _note_random_weights("dream", name, options.pretrained, "torchvision:GoogLeNet_Weights.IMAGENET1K_V1")
    return 0


def cmd_style(args: list[str]) -> int:
    """``vr style CONTENT STYLE --out result.png ...``: neural style transfer (Gatys et al. 2016) written as a PNG."""
    parser = _argument_parser("vr style", "Neural style transfer (Gatys et al. 2016): CONTENT in STYLE (a PNG).")
    parser.add_argument("content", help="the image whose content is kept")
    parser.add_argument("style", help="the image whose style is taken")
    parser.add_argument("--out", default="style.png", help="the PNG to write (default: style.png)")
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
    options = parser.parse_args(args)

    from .analysis import inspect
    from .analysis.style import StyleFeatures, StyleTransferLoss, style_transfer

    if options.size < 1:
        raise ConfigError(f"vr style: --size must be at least 1; got {options.size}")
    generator = _seeded(options.seed)
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
    print(f"style: {inspect.save_image(result, spec, options.out)}")
    _note_random_weights("style", options.model, options.pretrained, "torchvision:VGG19_Weights.IMAGENET1K_V1")
    return 0


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "train": cmd_train,
    "models": cmd_models,
    "predict": cmd_predict,
    "eval": cmd_eval,
    "export": cmd_export,
    "convert": cmd_convert,
    "data": cmd_data,
    "benchmark": cmd_benchmark,
    "compare": cmd_compare,
    "inspect": cmd_inspect,
    "dream": cmd_dream,
    "style": cmd_style,
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = args[0], args[1:]
    try:
        if command not in COMMANDS:
            matches = close_matches(command, COMMANDS)
            raise ConfigError(
                f"unknown command '{command}'."
                + (f" Did you mean: {', '.join(matches)}?" if matches else f" Commands: {', '.join(COMMANDS)}")
            )
        return COMMANDS[command](rest)
    except VisionResearchError as err:
        print(f"error: {error_message(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
