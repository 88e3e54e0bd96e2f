"""Group runs by what differs between them, and compare each group's seeds with a baseline group's.

Groups: by default, the overrides whose values differ between the runs, the seed excepted (a sweep
``model=lenet5,lenet5_modern seed=0,1,2`` gives two groups of three); ``by`` names the keys instead (dotted config
keys such as ``task.head.variant`` or config groups such as ``experiment``). Runs of several data sets or tasks
have no common table (their figures do not compare): without ``by`` that is an error naming them.

Per group and metric: n, mean and sample standard deviation (ddof 1). Against the baseline group: the difference
of means with its 95 % confidence interval from Welch's t-test (unequal variances; Welch 1947), computed by
:func:`scipy.stats.ttest_ind`. With fewer than 3 runs in either group the interval is not reported: two seeds
say nothing about the spread. A difference is marked significant when its interval excludes zero.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import ConfigError, close_matches
from .runs import Run

# Settings that do not make runs different experiments (resume: the folder a run continued in).
IGNORED_KEYS = ("seed", "run_name", "paths.", "hydra", "optimized_metric", "threads", "resume")
MIN_RUNS_FOR_INTERVAL = 3
CONFIDENCE = 0.95
COST_COLUMNS = {
    "parameters": "parameters",
    "gflops": "GFLOPs",
    "seconds": "wall s",
    "train_images_per_second": "train img/s",
}


def _ignored(key: str) -> bool:
    return any(key == k or key.startswith(k) for k in IGNORED_KEYS)


def grouping_keys(runs: Sequence[Run]) -> list[str]:
    """The overridden keys (seed and paths excepted) whose values differ between runs, in order of first use.

    Runs without Hydra overrides (a config.yaml only) are compared on their whole config instead."""
    keys: list[str] = []
    for run in runs:
        keys += [k for k in run.overrides if k not in keys and not _ignored(k)]
    if not any(run.overrides for run in runs):
        keys = [k for k in dict.fromkeys(k for run in runs for k in run.settings) if not _ignored(k)]
    return [k for k in keys if len({_text(run.value(k)) for run in runs}) > 1]


def _runs_of(counts: Counter) -> str:
    """``name: 1 run, other: 3 runs``."""
    return ", ".join(f"{name}: {n} run" + ("s" if n > 1 else "") for name, n in counts.items())


def check_comparable(runs: Sequence[Run]) -> None:
    """A ``ConfigError`` naming the data sets and tasks when ``runs`` are of several (those of unknown ones aside)."""
    found = {
        "data sets": Counter(run.data for run in runs if run.data is not None),
        "tasks": Counter(str(run.settings["task.name"]) for run in runs if "task.name" in run.settings),
    }
    mixed = [f"{len(counts)} {what} ({_runs_of(counts)})" for what, counts in found.items() if len(counts) > 1]
    if mixed:
        raise ConfigError(
            f"the runs are of {' and of '.join(mixed)}, whose figures do not compare in one table: compare the runs "
            "of one at a time (a folder each), or give --by to group them anyway"
        )


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def assign_groups(runs: Sequence[Run], by: Sequence[str] | None = None) -> list[str]:
    """Set each run's group label (``key=value,key=value``; ``all`` when nothing differs); returns the keys."""
    keys = list(by) if by else grouping_keys(runs)
    known = {k for run in runs for k in (*run.settings, *run.overrides)}
    for key in keys:
        if key not in known:
            matches = close_matches(key, known)
            hint = f" Did you mean: {', '.join(matches)}?" if matches else ""
            raise ConfigError(f"--by {key}: no run has this setting.{hint}")
    for run in runs:
        run.group = {k: _text(run.value(k)) for k in keys}
    return keys


def default_metrics(runs: Sequence[Run]) -> list[str]:
    """The task's primary metric on the test split (else validation) and its best validation value."""
    from ..tasks import TASKS

    names = {k for run in runs for k in run.metrics}
    chosen: list[str] = []
    for task in dict.fromkeys(str(run.settings.get("task.name")) for run in runs):
        if task not in TASKS:
            continue
        monitor = TASKS.get(task).monitor  # e.g. val/acc1
        main = monitor.replace("val/", "test/", 1)
        chosen += [m for m in (main if main in names else monitor, f"best/{monitor}") if m in names]
    return list(dict.fromkeys(chosen)) or sorted(m for m in names if m.startswith(("test/", "best/")))[:2]


def baseline_label(runs: Sequence[Run], baseline: str | None) -> str:
    """The label of the group chosen by ``key=value[,key=value]`` (default: the first group with a finished run)."""
    groups = {run.label: run.group for run in runs if run.finished}
    if not groups:
        raise ConfigError(f"no run finished among {len(runs)} (e.g. {runs[0].path}: {runs[0].problem})")
    if baseline is None:
        return next(iter(groups))
    parts = [part.partition("=") for part in baseline.split(",")]
    if not all(sep and key for key, sep, _ in parts):
        raise ConfigError(f"--baseline {baseline!r}: expected key=value[,key=value]")
    matching = [label for label, group in groups.items() if all(group.get(k) == v for k, _, v in parts)]
    if len(matching) != 1:
        found = "no group matches" if not matching else f"{len(matching)} groups match"
        raise ConfigError(f"--baseline {baseline}: {found}; the groups are: {'; '.join(groups)}")
    return matching[0]


@dataclass
class Difference:
    """Mean of a group minus mean of the baseline, with Welch's 95 % interval (NaN when not meaningful)."""

    delta: float
    low: float = math.nan
    high: float = math.nan
    note: str = ""

    @property
    def significant(self) -> bool:
        return math.isfinite(self.low) and (self.low > 0 or self.high < 0)


def welch_difference(values: Sequence[float], baseline: Sequence[float]) -> Difference:
    """``mean(values) − mean(baseline)`` with the 95 % Welch interval when both have ≥ 3 runs."""
    a, b = np.asarray(values, float), np.asarray(baseline, float)
    delta = float(a.mean() - b.mean()) if a.size and b.size else math.nan
    if min(a.size, b.size) < MIN_RUNS_FOR_INTERVAL:
        return Difference(delta, note=f"n < {MIN_RUNS_FOR_INTERVAL}")
    if a.std(ddof=1) == 0 and b.std(ddof=1) == 0:
        return Difference(delta, note="no spread")
    interval = stats.ttest_ind(a, b, equal_var=False).confidence_interval(CONFIDENCE)
    return Difference(delta, float(interval.low), float(interval.high))


@dataclass
class Comparison:
    """Everything a report needs: the groups in order, the per-run table, the statistics per group."""

    keys: list[str]
    metrics: list[str]
    baseline: str
    runs: list[Run]
    table: pd.DataFrame  # one row per group: n, <metric> mean/std, Δ and interval, costs
    unfinished: list[Run] = field(default_factory=list)

    @property
    def groups(self) -> list[str]:
        return list(self.table.index)


def run_frame(runs: Sequence[Run], metrics: Sequence[str]) -> pd.DataFrame:
    """One row per finished run: group, path, the metrics and the costs (NaN where a run lacks one)."""
    rows = []
    for run in runs:
        summary = run.summary or {}
        row = {"group": run.label, "run": str(run.path)}
        row.update({m: run.metrics.get(m, math.nan) for m in metrics})
        row.update({c: summary.get(c) if summary.get(c) is not None else math.nan for c in COST_COLUMNS})
        rows.append(row)
    return pd.DataFrame(rows)


def compare_runs(
    runs: Sequence[Run],
    by: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    baseline: str | None = None,
) -> Comparison:
    """Group ``runs``, choose the metrics and baseline, and compute per-group statistics; runs of several data sets
    or tasks are an error unless grouped ``by`` keys given."""
    if not by:
        check_comparable(runs)
    keys = assign_groups(runs, by)
    base = baseline_label(runs, baseline)
    finished = [run for run in runs if run.finished]
    metrics = list(metrics) if metrics else default_metrics(finished)
    if not metrics:
        raise ConfigError("the finished runs have no test/ or best/ metrics; name some with --metrics")
    available = {k for run in finished for k in run.metrics}
    for metric in metrics:
        if metric not in available:
            matches = close_matches(metric, available)
            raise ConfigError(f"--metrics {metric}: no run has it. Did you mean: {', '.join(matches or available)}?")
    frame = run_frame(finished, metrics)
    order = list(dict.fromkeys(frame["group"]))
    grouped = frame.groupby("group", sort=False)
    table = pd.DataFrame(index=pd.Index(order, name="group"))
    table["n"] = grouped.size()
    for metric in metrics:
        table[f"{metric} mean"] = grouped[metric].mean()
        table[f"{metric} std"] = grouped[metric].std(ddof=1)
        base_values = frame.loc[frame["group"] == base, metric].dropna()
        differences = {group: welch_difference(values.dropna(), base_values) for group, values in grouped[metric]}
        table[f"{metric} delta"] = [differences[g].delta for g in order]
        table[f"{metric} ci_low"] = [differences[g].low for g in order]
        table[f"{metric} ci_high"] = [differences[g].high for g in order]
        table[f"{metric} significant"] = [differences[g].significant for g in order]
        table[f"{metric} note"] = ["baseline" if g == base else differences[g].note for g in order]
    for column in COST_COLUMNS:
        table[column] = grouped[column].mean()
    return Comparison(keys, metrics, base, list(runs), table, [run for run in runs if not run.finished])
