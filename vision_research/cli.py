"""The ``vr`` command: ``vr <subcommand> [Hydra overrides or options]``.

Mistakes in the command line (an unknown model, config key or datamodule) end in one ``error:`` line that
names what was wrong and what was probably meant — never a Hydra or Lightning traceback.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from .errors import ConfigError, VisionResearchError, close_matches


def path_safe(text: str) -> str:
    """A run-directory name from a config value: path separators, ':' and spaces become '-'."""
    return re.sub(r"[^\w.=,+-]+", "-", str(text)).strip("-")


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

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
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
            -m/--multirun sweeps over comma-separated values (vr train -m model=lenet5,lenet5_modern seed=1,2)
  models    list the registered models with parameters and GFLOPs (vr models 'lenet*' [--no-flops])
  predict   run a checkpoint on images: vr predict ckpt_path=runs/.../checkpoints/last.ckpt input=photos/
            [output=DIR] [batch_size=16] (segmentation: palette PNGs; detection: COCO JSON + drawn boxes;
            classification: predictions.csv)
  convert   convert annotations between VOC, COCO and YOLO
            (vr convert voc coco VOCdevkit/VOC2012 out/ --set train; vr convert --help)
  data      dataset statistics: vr data stats ROOT [--format auto|coco|voc|yolo] [--set train] [--plot stats.png]
  benchmark inference and training speed (img/s, step-time percentiles), GFLOPs and peak memory of models;
            --compare torchvision|timm measures the reference implementation in the same run
            (vr benchmark resnet18 --compare torchvision; vr benchmark 'resnet*' --csv out.csv; vr benchmark --help)

Run directories go to runs/ (TensorBoard: tensorboard --logdir runs)."""


def config_dir() -> Path:
    if not (CONFIG_DIR / "train.yaml").is_file():
        raise ConfigError(
            f"the config tree was not found at {CONFIG_DIR}; install the project from its "
            "source folder with `pip install -e .`"
        )
    return CONFIG_DIR


def _config_groups() -> dict[str, list[str]]:
    root = config_dir()
    return {d.name: sorted(p.stem for p in d.glob("*.yaml")) for d in root.iterdir() if d.is_dir()}


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


def _explain_hydra_error(message: str, base_keys: list[str]) -> str:
    """Turn Hydra's composition error into one line with close matches."""
    groups = _config_groups()
    missing_group = re.search(r"Could not find '([\w/]+)/([^']+)'", message)
    if missing_group and missing_group.group(1) in groups:
        group, option = missing_group.groups()
        matches = close_matches(option, groups[group]) or groups[group]
        return f"unknown {group} '{option}' (configs/{group}/). Did you mean: {', '.join(matches)}?"
    missing_key = re.search(r"Could not override '([^']+)'", message) or re.search(
        r"Key '([^']+)' is not in struct", message
    )
    if missing_key:
        key = missing_key.group(1)
        matches = close_matches(key, base_keys) or close_matches(key.split(".")[-1], base_keys)
        hint = f" Did you mean: {', '.join(matches)}?" if matches else ""
        return f"unknown config key '{key}'.{hint} (Add a new key with +{key}=...)"
    return message.strip().splitlines()[0] if message.strip() else "invalid override"


def _flat_keys(node: object, prefix: str = "") -> list[str]:
    from omegaconf import DictConfig

    keys = []
    if isinstance(node, DictConfig):
        for key in node:
            path = f"{prefix}{key}"
            keys.append(path)
            keys.extend(_flat_keys(node._get_node(key), path + "."))
    return keys


def validate_overrides(overrides: list[str], config_name: str = "train") -> None:
    """Compose the config once per value of each sweep; raise ``ConfigError`` on the first mistake."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise ConfigError(f"cannot parse the overrides: {str(err).splitlines()[0]}") from None
    # One value per sweep gives the base; then each further value of each sweep on its own.
    base = [
        o.get_key_element()
        + "="
        + (next(iter(o.sweep_string_iterator())) if o.is_sweep_override() else o.get_value_element_as_str())
        for o in parsed
    ]
    variants = [base]
    for i, override in enumerate(parsed):
        if override.is_sweep_override():
            for value in list(override.sweep_string_iterator())[1:]:
                variants.append([*base[:i], f"{override.get_key_element()}={value}", *base[i + 1 :]])
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        defaults = compose(config_name=config_name)
        base_keys = _flat_keys(defaults)
        for variant in variants:
            try:
                composed = compose(
                    config_name=config_name, overrides=[o for o in variant if not o.startswith("hydra.")]
                )
            except HydraException as err:
                raise ConfigError(_explain_hydra_error(str(err), base_keys)) from None
            _check_value_types(parsed, defaults, composed)
    GlobalHydra.instance().clear()


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
    """Processes started by torchrun or srun need one run directory for all ranks."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    external = max(int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("SLURM_STEP_NUM_TASKS", 1)))
    if external > 1 and not any(o.startswith("hydra.run.dir=") for o in hydra_cfg.overrides.hydra):
        raise ConfigError(
            f"this is one of {external} processes started by torchrun/srun, which must share one run directory: "
            "add hydra.run.dir=runs/<name> (the default name holds the start time, which differs between processes)"
        )


def _run_job(cfg: object) -> dict:
    """The body of one Hydra job: train, and turn our errors into one clean line."""
    from hydra.core.hydra_config import HydraConfig
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    from .train import train

    run_dir = HydraConfig.get().runtime.output_dir
    try:
        _check_launch()
        summary = train(cfg, run_dir)
    except (VisionResearchError, MisconfigurationException) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    if rank_zero_only.rank == 0:
        # Per-class figures (test/iou_<class>) stay in metrics.json and TensorBoard; the console gets the summary.
        shown = {k: v for k, v in summary["metrics"].items() if k.startswith(("test/", "best/")) and "/iou_" not in k}
        print(f"run: {run_dir} ({summary['seconds']:.1f} s)")
        print("  " + "  ".join(f"{k} {v:.4f}" for k, v in sorted(shown.items())))
    return summary


def cmd_train(args: list[str]) -> int:
    import hydra

    import __main__

    if not any(a in ("--help", "-h", "--hydra-help") for a in args):
        validate_overrides(_overrides_only(args))
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
    from rich.console import Console
    from rich.table import Table

    from .analysis import model_summary
    from .models import count_parameters, create_model, list_models

    flops = "--no-flops" not in args
    patterns = [a for a in args if not a.startswith("--")]
    pattern = patterns[0] if patterns else "*"
    names = list_models(pattern)
    if not names:
        raise ConfigError(f"no registered model matches '{pattern}'")
    table = Table(title=f"vision_research models ({len(names)})", caption="GFLOPs: 2 × multiply-adds, one image")
    for column in ("model", "parameters", "input", "GFLOPs", "stages (channels @ reduction)"):
        table.add_column(column, justify="right" if column in ("parameters", "GFLOPs") else "left")
    for name in names:
        model = create_model(name)
        stages = ", ".join(f"{f['num_chs']}@{f['reduction']}" for f in model.feature_info)
        size = "×".join(str(s) for s in model.default_cfg["input_size"])
        gflops = f"{model_summary(model).total_flops / 1e9:.2f}" if flops else "-"
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
    from .data.formats import FORMATS, convert

    parser = _argument_parser("vr convert", "Convert annotations between Pascal VOC, COCO and YOLO txt layouts.")
    parser.add_argument("source_format", choices=FORMATS)
    parser.add_argument("destination_format", choices=FORMATS)
    parser.add_argument(
        "source", help="VOC root (Annotations/...), COCO instances JSON, or YOLO root (images/, labels/)"
    )
    parser.add_argument("destination", help="output folder")
    parser.add_argument("--set", default="train", help="VOC image set / YOLO sub-folder / COCO output name")
    parser.add_argument("--image-dir", default=None, help="images of a COCO file (default: found beside it)")
    parser.add_argument("--class-names", default=None, help="comma-separated class names (YOLO without classes.txt)")
    options = parser.parse_args(args)
    names = options.class_names.split(",") if options.class_names else None
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
    """``vr data stats ROOT``: class counts, boxes per image, box sizes (histogram PNG), image sizes."""
    from rich.console import Console
    from rich.table import Table

    from .data.stats import dataset_stats, load_for_stats, plot_stats

    parser = _argument_parser("vr data", "Dataset tools.")
    parser.add_argument("action", choices=["stats"])
    parser.add_argument("root", help="COCO JSON or a folder with annotations/*.json, a VOC root, or a YOLO root")
    parser.add_argument("--format", default="auto", choices=["auto", "coco", "voc", "yolo"])
    parser.add_argument("--set", default=None, help="VOC image set or YOLO sub-folder (default: everything)")
    parser.add_argument("--plot", default="data_stats.png", help="where to write the histograms (PNG)")
    options = parser.parse_args(args)
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

    parser = _argument_parser(
        "vr benchmark",
        "Measure inference and training throughput, step-time percentiles, GFLOPs and peak memory of models; "
        "with --compare, the reference library's implementation too, in alternating rounds.",
    )
    parser.add_argument("models", nargs="+", metavar="MODEL", help="registered name, glob ('resnet*') or timm:<name>")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--img-size", type=int, default=None, help="square input side (default: the model's own)")
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
    options = parser.parse_args(args)
    # The options are named after the settings' fields (batch_size, precision, ...).
    fields = {f.name for f in dataclasses.fields(BenchmarkSettings)}
    settings = BenchmarkSettings(**{k: v for k, v in vars(options).items() if k in fields}).resolved()
    console = Console()
    if not console.is_terminal:  # a pipe or a file: the whole table, unwrapped, for pasting
        console = Console(width=max(console.width, 200))
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
    missing = [k for k, default in allowed.items() if default is None and k not in values]
    if missing:
        raise ConfigError(f"vr {command}: {', '.join(missing)} missing (e.g. vr {command} ckpt_path=... input=...)")
    return {**{k: v for k, v in allowed.items() if v is not None}, **values}


def cmd_predict(args: list[str]) -> int:
    """``vr predict ckpt_path=... input=... [output=...] [batch_size=16]``."""
    from .predict import predict

    options = _key_values(args, {"ckpt_path": None, "input": None, "output": "", "batch_size": "16"}, "predict")
    if not options["batch_size"].isdigit() or int(options["batch_size"]) < 1:
        raise ConfigError(f"vr predict: batch_size must be a positive integer; got '{options['batch_size']}'")
    output = predict(options["ckpt_path"], options["input"], options["output"] or None, int(options["batch_size"]))
    print(f"predictions written to {output}")
    return 0


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "train": cmd_train,
    "models": cmd_models,
    "predict": cmd_predict,
    "convert": cmd_convert,
    "data": cmd_data,
    "benchmark": cmd_benchmark,
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
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
