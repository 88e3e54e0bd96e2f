"""Run directories on disk, read back for comparison: settings, overrides, final figures and learning curves.

A run directory is what ``vr train`` writes (``config.yaml`` — the resolved config —, Hydra's ``.hydra/`` with the
overrides and config-group choices, TensorBoard events, ``metrics.json``). A run that crashed or was killed has
its config but no ``metrics.json``; one that diverged has non-finite figures; one whose ``config.yaml`` cannot be
read (not text, not YAML, not a mapping) cannot be grouped. All are kept, with the reason, so that a comparison can
list them instead of silently dropping them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, DataError
from ..run_dir import CONFIG, HYDRA_CONFIG, HYDRA_STATE, METRICS, OVERRIDES

RUN_MARKERS = (CONFIG, HYDRA_CONFIG)


@dataclass
class Run:
    """One run directory: ``settings`` (flattened config plus config-group choices such as ``experiment``),
    ``overrides`` (the command-line overrides, key → value text) and ``summary`` (``metrics.json``, or ``None``)."""

    path: Path
    settings: dict[str, Any]
    overrides: dict[str, str]
    summary: dict[str, Any] | None
    problem: str | None = None
    data: str | None = None  # the data set its figures were scored on (data_set); None when unknown
    group: dict[str, str] = field(default_factory=dict, compare=False)  # set by the comparison: key → value

    @property
    def label(self) -> str:
        """``key=value,key=value`` of the run's group (``all`` when the comparison groups by nothing)."""
        return ",".join(f"{k}={v}" for k, v in self.group.items()) or "all"

    @property
    def finished(self) -> bool:
        return self.problem is None

    @property
    def metrics(self) -> dict[str, float]:
        return dict((self.summary or {}).get("metrics", {}))

    def value(self, key: str) -> Any:
        """A setting by dotted key (``model.name``) or group (``experiment``), else the override's text."""
        return self.settings.get(key, self.overrides.get(key))


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts → ``{"a.b.c": value}``; lists stay values (``[8, 16]``)."""
    if not isinstance(node, dict):
        return {prefix: node} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return {k.rstrip("."): v for k, v in flat.items()}


def natural_key(path: Path) -> list[Any]:
    """Sort key that puts sweep job ``2_...`` before ``10_...``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def find_run_dirs(root: Path) -> list[Path]:
    """Every run directory under ``root`` (``root`` itself included), in natural order; runs do not nest."""
    found: list[Path] = []

    def visit(folder: Path) -> None:
        if any((folder / marker).is_file() for marker in RUN_MARKERS):
            found.append(folder)
            return
        for child in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            visit(child)

    visit(root)
    return sorted(found, key=natural_key)


def _parse_yaml(path: Path) -> Any:
    """The YAML of ``path``; a ``ValueError`` saying why not when it is not UTF-8 text or not valid YAML."""
    try:
        return yaml.safe_load(path.read_text())
    except UnicodeDecodeError as err:
        raise ValueError(f"not UTF-8 text ({err.reason} at byte {err.start})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"not valid YAML{where} ({problem})") from None


def _read_yaml(path: Path) -> Any:
    try:
        return _parse_yaml(path)
    except ValueError as err:
        raise DataError(f"{path}: {err}") from None


def _read_config(path: Path) -> tuple[dict[str, Any], str | None]:
    """The config in ``path`` (``{}`` when there is no such file), or ``{}`` and why it cannot be read."""
    if not path.is_file():
        return {}, None
    try:
        config = _parse_yaml(path)
    except ValueError as err:
        return {}, f"unreadable {path.name}: {err}"
    if not isinstance(config, dict):
        kind = "empty" if config is None else f"a {type(config).__name__}, not a mapping of settings"
        return {}, f"unreadable {path.name}: {kind}"
    return config, None


def data_set(config: dict[str, Any]) -> str | None:
    """The data set a run config names: ``data.name``, with ``data.root`` when it has one (None: no data node)."""
    data = config.get("data")
    if not isinstance(data, dict) or "name" not in data:
        return None
    return f"{data['name']} {data['root']}" if data.get("root") else str(data["name"])


def _overrides(run_dir: Path) -> dict[str, str]:
    """``.hydra/overrides.yaml`` as key → value text; ``+``/``++``/``~`` prefixes dropped."""
    path = run_dir / OVERRIDES
    items = _read_yaml(path) if path.is_file() else []
    pairs = (str(item).partition("=") for item in items or [])
    return {key.lstrip("+~"): value for key, _, value in pairs}


def _group_choices(run_dir: Path) -> dict[str, Any]:
    """The config-group choices of the run (``experiment``, ``model``, ``task/head`` …), Hydra's own left out."""
    path = run_dir / HYDRA_STATE
    if not path.is_file():
        return {}
    choices = ((_read_yaml(path) or {}).get("hydra", {}).get("runtime", {}) or {}).get("choices", {}) or {}
    return {k: v for k, v in choices.items() if not k.startswith("hydra")}


def _problem(summary: dict[str, Any] | None, metrics_name: str) -> str | None:
    if summary is None:
        return "did not finish (no metrics.json)" if metrics_name == str(METRICS) else f"no {metrics_name}"
    bad = [k for k, v in summary.get("metrics", {}).items() if isinstance(v, float) and not math.isfinite(v)]
    return f"non-finite metrics: {', '.join(sorted(bad))}" if bad else None


def load_run(run_dir: Path, metrics_name: str = str(METRICS)) -> Run:
    """Read one run directory; ``metrics_name`` may point into the run, e.g. ``eval/val-mnist/metrics.json`` (whose
    ``config.yaml`` beside it, what ``vr eval`` scored, gives the data set)."""
    config_file = run_dir / CONFIG
    config, unreadable = _read_config(config_file if config_file.is_file() else run_dir / HYDRA_CONFIG)
    settings = {**flatten(config), **_group_choices(run_dir)}
    metrics_file = run_dir / metrics_name
    summary = None
    if metrics_file.is_file():
        try:
            summary = json.loads(metrics_file.read_text())
        except json.JSONDecodeError as err:
            raise DataError(f"{metrics_file}: not valid JSON ({err})") from None
    scored = _read_config(metrics_file.parent / CONFIG)[0] if metrics_file.parent != run_dir else config
    problem = unreadable or _problem(summary, metrics_name)
    return Run(run_dir, settings, _overrides(run_dir), summary, problem, data_set(scored or config))


def load_runs(
    roots: Iterable[str | Path],
    metrics_name: str = str(METRICS),
    progress: Callable[[Iterable[Path]], Iterable[Path]] = iter,
) -> list[Run]:
    """Every run under ``roots``; a root that does not exist or holds no run is a ``ConfigError``."""
    run_dirs: list[Path] = []
    for root in map(Path, roots):
        if not root.is_dir():
            raise ConfigError(f"{root}: no such folder of runs")
        found = find_run_dirs(root)
        if not found:
            raise ConfigError(f"{root}: no runs under it (a run folder holds config.yaml, written by vr train)")
        run_dirs.extend(p for p in found if p not in run_dirs)
    return [load_run(path, metrics_name) for path in progress(run_dirs)]


def read_curves(run_dir: Path, tags: Iterable[str]) -> dict[str, list[tuple[int, int, float]]]:
    """Per tag, the logged ``(epoch, step, value)`` of a run's TensorBoard events (one value per epoch: the last).

    Lightning logs an ``epoch`` scalar at every step it logs; a value's epoch is the one logged at its step.
    """
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={SCALARS: 0})
    events.Reload()
    available = set(events.Tags()["scalars"])
    epoch_at = {e.step: int(e.value) for e in events.Scalars("epoch")} if "epoch" in available else {}
    curves: dict[str, list[tuple[int, int, float]]] = {}
    for tag in tags:
        if tag not in available:
            continue
        by_epoch: dict[int, tuple[int, int, float]] = {}
        for index, event in enumerate(events.Scalars(tag)):
            epoch = epoch_at.get(event.step, index)
            by_epoch[epoch] = (epoch, event.step, float(event.value))
        curves[tag] = [by_epoch[e] for e in sorted(by_epoch)]
    return curves
