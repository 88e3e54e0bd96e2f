"""The ``vr`` command: ``vr <subcommand> [Hydra overrides or options]``.

Mistakes in the command line (an unknown model, config key or datamodule) end in one ``error:`` line that
names what was wrong and what was probably meant — never a Hydra or Lightning traceback.
"""

from __future__ import annotations

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

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
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


def _run_job(cfg: object) -> dict:
    """The body of one Hydra job: train, and turn our errors into one clean line."""
    from hydra.core.hydra_config import HydraConfig
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from .train import train

    run_dir = HydraConfig.get().runtime.output_dir
    try:
        summary = train(cfg, run_dir)
    except (VisionResearchError, MisconfigurationException) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    shown = {k: v for k, v in summary["metrics"].items() if k.startswith(("test/", "best/"))}
    print(f"run: {run_dir} ({summary['seconds']:.1f} s)")
    print("  " + "  ".join(f"{k} {v:.4f}" for k, v in sorted(shown.items())))
    return summary


def cmd_train(args: list[str]) -> int:
    import hydra

    if not any(a in ("--help", "-h", "--hydra-help") for a in args):
        validate_overrides(_overrides_only(args))
    job = hydra.main(config_path=str(config_dir()), config_name="train", version_base="1.3")(_run_job)
    sys.argv = ["vr train", *args]
    job()
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


COMMANDS: dict[str, Callable[[list[str]], int]] = {"train": cmd_train, "models": cmd_models}


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
