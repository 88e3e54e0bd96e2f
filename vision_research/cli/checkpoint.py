"""``vr predict``, ``vr eval`` and ``vr export``: Hydra apps over a checkpoint's run.

Each has its config file (``configs/predict.yaml``, ``eval.yaml``, ``export.yaml``: ``ckpt_path`` and the command's
own keys) whose defaults list puts the checkpoint's run config underneath: ``from_checkpoint`` (its ``config.yaml``
but the data node) and ``data/from_checkpoint`` (the data node, so that ``data=NAME`` takes
``configs/data/NAME.yaml`` in its place). Both are stored in Hydra's ConfigStore from ``ckpt_path`` before the
overrides are checked and composed as ``vr train``'s are — the same grammar, the same one-line errors with close
matches — so ``vr eval ckpt_path=... data.image_size=320 trainer.precision=bf16-mixed`` is plain Hydra.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config_tree import config_dir, override_key, quoted_value
from ..errors import ConfigError, DataError
from .command import Command, config_summary, config_usage, metrics_line, read_config_help, wants_help
from .overrides import parse_overrides, validate_overrides

RUN_NODE = "from_checkpoint"
PATH_KEYS = ("ckpt_path", "input", "output")
# Characters Hydra's override grammar does not take in an unquoted value; paths (a sweep's run folders are named
# key=value,key=value) are quoted for it.
UNQUOTED = re.compile(r"^[^'\"=,\[\]{}() ]*$")


def quote_paths(args: list[str]) -> list[str]:
    """``args`` with the values of :data:`PATH_KEYS` quoted where Hydra would read them as more than a path."""
    quoted = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key in PATH_KEYS and not UNQUOTED.match(value) and value[:1] not in ("'", '"'):
            value = quoted_value(value)
        quoted.append(f"{key}{sep}{value}")
    return quoted


def store_run_config(checkpoint: Path, data_defaults: dict[str, Any]) -> None:
    """The checkpoint's run config in Hydra's ConfigStore: ``from_checkpoint`` and ``data/from_checkpoint`` (the
    run's data node over ``data_defaults``)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from ..run_dir import run_config

    if not checkpoint.is_file():
        raise DataError(f"{checkpoint}: checkpoint not found")
    run = OmegaConf.to_container(run_config(checkpoint))
    data = {**data_defaults, **run.pop("data", {})}
    store = ConfigStore.instance()
    store.store(name=RUN_NODE, node=run)
    store.store(group="data", name=RUN_NODE, node=data)


def compose(
    command: str, args: list[str], data_defaults: dict[str, Any] | None = None
) -> tuple[dict[str, Any], Any, list[str]]:
    """``vr COMMAND ARGS`` composed: (the command's own options, the run config with the overrides, those of the
    overrides that change the run config). ``data_defaults``: the data keys the command reads, with their values for
    a run whose data node lacks them."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    flags = [arg for arg in args if arg.startswith("-")]
    if flags:
        raise ConfigError(f"vr {command} takes KEY=VALUE overrides, not {flags[0]} (see vr {command} --help)")
    args = quote_paths(args)
    parsed = parse_overrides(args)
    if sweeps := [o.get_key_element() for o in parsed if o.is_sweep_override()]:
        raise ConfigError(f"vr {command} takes one value per key; {sweeps[0]} has several")
    _, keys = read_config_help(command)
    own = [key.name for key in keys]
    given = {o.key_or_group: o.value() for o in parsed}
    missing = [key.name for key in keys if key.default == "???" and key.name not in given]
    if missing:
        example = " ".join(f"{key.name}=..." for key in keys if key.default == "???")
        raise ConfigError(f"vr {command}: {', '.join(missing)} missing (e.g. vr {command} {example})")
    store_run_config(Path(str(given["ckpt_path"])), data_defaults or {})
    validate_overrides(args, config_name=command)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = hydra_compose(config_name=command, overrides=args)
    GlobalHydra.instance().clear()
    values = OmegaConf.to_container(cfg, resolve=True)
    options = {key: str(values[key]) if key in PATH_KEYS and values[key] is not None else values[key] for key in own}
    run_cfg = OmegaConf.masked_copy(cfg, [key for key in cfg if key not in own])
    OmegaConf.set_struct(run_cfg, False)
    return options, run_cfg, [arg for arg in args if override_key(arg) not in own]


def note(command: str) -> Callable[[str], None]:
    """What prints a note of ``vr COMMAND`` on stderr, one line each."""
    return lambda text: print(f"vr {command}: note: {text}", file=sys.stderr)


def run_predict(args: list[str]) -> int:
    from ..data.images import DEFAULT_MAX_PIXELS
    from ..predict import predict

    # Every run's images are read with a pixel limit, also a run of in-memory data (MNIST) whose node has none.
    options, run_cfg, _ = compose("predict", args, {"max_image_pixels": DEFAULT_MAX_PIXELS})
    print(f"predictions written to {predict(**options, run_cfg=run_cfg, note=note('predict'))}")
    return 0


def run_eval(args: list[str]) -> int:
    import logging

    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from ..evaluate import evaluate, names_text

    options, run_cfg, overrides = compose("eval", args)
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    lightning_log.setLevel(logging.WARNING)  # no GPU/TPU notices and tips around the summary
    try:
        summary = evaluate(**options, run_cfg=run_cfg, overrides=overrides)
    except MisconfigurationException as err:
        raise ConfigError(str(err).strip().splitlines()[0]) from None
    finally:
        lightning_log.setLevel(level)
    if renamed := summary.get("renamed_classes"):
        note("eval")(
            f"the data's classes {names_text(renamed['data'])} were scored as the checkpoint's "
            f"{names_text(renamed['checkpoint'])} (allow_class_rename=true)"
        )
    print(f"eval: {summary['output']} ({summary['seconds']:.1f} s, {summary['images']:,} {summary['split']} images)")
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


def run_export(args: list[str]) -> int:
    from ..export import export

    options, run_cfg, _ = compose("export", args)
    report = export(**options, run_cfg=run_cfg)
    opset = f", opset {report.opset}" if report.opset is not None else ""
    print(f"export: {report.path} ({report.format}, {report.dtype}{opset})")
    print(f"sidecar: {report.sidecar}")
    check = report.metadata["verification"]
    print(
        f"max abs difference to the eager model: {report.max_abs_diff:.3g} on {check['images']} images "
        f"(tolerance {report.tolerance:g}, {check['runtime']})"
    )
    return 0


def checkpoint_command(name: str, work: Any) -> Command:
    """The Hydra command ``name`` over ``configs/<name>.yaml`` and a checkpoint's run."""

    def run(args: list[str]) -> int:
        if wants_help(args):
            print(config_usage(name), end="")
            return 0
        return work(args)

    return Command(name, lambda: config_summary(name), lambda: config_usage(name), run)


PREDICT = checkpoint_command("predict", run_predict)
EVAL = checkpoint_command("eval", run_eval)
EXPORT = checkpoint_command("export", run_export)
