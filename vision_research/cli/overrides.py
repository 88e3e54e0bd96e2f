"""Hydra overrides checked before anything runs: every value of a sweep composed once, unknown keys and group
options named with the close ones, wrong types, mandatory values left out, output folders that cannot be made,
and processes launched by torchrun / srun without a shared run folder — each one ``ConfigError`` line.

``vr train`` checks its overrides against ``configs/train.yaml``; ``vr predict`` / ``eval`` / ``export`` against
their own config with the checkpoint's run config underneath (:mod:`.checkpoint`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..config_tree import config_dir, flat_keys, missing_keys
from ..errors import ConfigError, close_matches
from ..paths import check_can_create

# Hydra's flags that take a value (the value is not an override).
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
PLUGINS = "Hydra's joblib, submitit and optuna plugins install with pip install -e '.[cluster]'"


def search_path(args: Sequence[str]) -> list[str]:
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


def config_groups(extra: Sequence[str] = ()) -> dict[str, list[str]]:
    """Each config group's options, in the packaged tree and the ``file://`` folders of ``extra``."""
    roots = [config_dir(), *(Path(e.removeprefix("file://")) for e in extra if not e.startswith("pkg://"))]
    groups: dict[str, set[str]] = {}
    for root in roots:
        for folder in (d for d in root.glob("*") if d.is_dir()):
            groups.setdefault(folder.name, set()).update(p.stem for p in folder.glob("*.yaml"))
    return {group: sorted(options) for group, options in groups.items()}


def overrides_only(args: Sequence[str]) -> list[str]:
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


def explain_hydra_error(message: str, base_keys: list[str], extra: Sequence[str] = ()) -> str:
    """Turn Hydra's composition error into one line with close matches (``extra``: added config folders)."""
    groups = config_groups(extra)
    missing_group = re.search(r"Could not find '([\w/]+)/([^']+)'", message)
    if missing_group and missing_group.group(1) in groups:
        group, option = missing_group.groups()
        matches = close_matches(option, groups[group]) or groups[group]
        return f"unknown {group} '{option}' (configs/{group}/). Did you mean: {', '.join(matches)}?"
    # Hydra plugin groups (hydra/launcher, hydra/sweeper): their options come from configs/hydra/ and the plugins.
    listed = re.search(r"Could not find '(hydra/\w+)/([^']+)'\s+Available options in '\1':\n((?:\t.*\n)*)", message)
    if listed:
        group, option, options = listed.group(1), listed.group(2), listed.group(3).split()
        matches = close_matches(option, options) or options
        return f"unknown {group} '{option}'. Did you mean: {', '.join(matches)}? ({PLUGINS})"
    unloaded = re.search(r"Could not load '(hydra/\w+)/([^']+)'", message)
    if unloaded:  # one of our configs/hydra/ options names a plugin that is not installed
        return f"{unloaded.group(1)} '{unloaded.group(2)}' is not installed ({PLUGINS})"
    missing_key = re.search(r"Could not override '([^']+)'", message) or re.search(
        r"Key '([^']+)' is not in struct", message
    )
    if missing_key:
        key = missing_key.group(1)
        matches = close_matches(key, base_keys) or close_matches(key.split(".")[-1], base_keys)
        hint = f" Did you mean: {', '.join(matches)}?" if matches else ""
        return f"unknown config key '{key}'.{hint} (Add a new key with +{key}=...)"
    return message.strip().splitlines()[0] if message.strip() else "invalid override"


def check_missing_values(composed: object, choices: Callable[[], Mapping[str, Any]]) -> None:
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


def check_value_types(parsed: list, defaults: object, composed: object) -> None:
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


def parse_overrides(overrides: Sequence[str]) -> list:
    """Hydra's parsed ``overrides``; a line that does not parse is a ``ConfigError``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as err:
        raise ConfigError(f"cannot parse the overrides: {str(err).splitlines()[0]}") from None


def validate_overrides(overrides: Sequence[str], config_name: str = "train", extra: Sequence[str] = ()) -> None:
    """Compose the config once per value of each sweep, with the config folders of ``extra`` (search-path entries)
    added; raise ``ConfigError`` on the first mistake."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    parsed = parse_overrides(overrides)
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
                raise ConfigError(explain_hydra_error(str(err), base_keys, extra)) from None
            check_value_types(parsed, defaults, composed)
            # Composing with the hydra node leaves Hydra's run-time state set for the job that follows (its sweep
            # subdir then fails to resolve), so the group choices are composed only for the error message.
            check_missing_values(
                composed,
                lambda overrides=job_overrides: (
                    compose(
                        config_name=config_name, overrides=overrides, return_hydra_config=True
                    ).hydra.runtime.choices
                ),
            )
    GlobalHydra.instance().clear()


def check_output_folders(overrides: Sequence[str]) -> None:
    """The folders a run or sweep will write can be made (Hydra would fail with a traceback): those given as
    ``hydra.run.dir`` / ``hydra.sweep.dir`` / ``paths.runs_dir`` overrides, else the default ``runs`` folder."""
    given = dict(o.split("=", 1) for o in overrides if "=" in o)
    keys = [k for k in ("hydra.run.dir", "hydra.sweep.dir", "paths.runs_dir") if k in given]
    for key in keys or ["paths.runs_dir"]:
        folder = given.get(key, "runs").strip("'\"")
        if "${" not in folder:
            check_can_create(folder, key)


def check_launch() -> None:
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
