"""Write a :class:`~vision_research.analysis.compare.Comparison` out: tables, learning curves, TensorBoard.

- ``report.md`` (paste into a paper or a study's README) and ``report.csv`` (every figure, full precision);
- ``curves.png``: per validation metric, the mean over each group's seeds per epoch with a min–max band;
- ``<output>/<group>/`` TensorBoard events: the group-mean curves under the runs' own tags, and the group's
  swept values with its mean final metrics in the HParams tab, so ``tensorboard --logdir ROOT`` shows one
  averaged line per group beside the individual runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from rich.table import Table

from ..paths import path_safe
from .compare import COST_COLUMNS, Comparison
from .runs import Run, read_curves

SIGNIFICANT = "*"


def _number(value: float, digits: int = 4) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _mean_std(table: pd.DataFrame, group: str, metric: str) -> str:
    mean, std = table.at[group, f"{metric} mean"], table.at[group, f"{metric} std"]
    return _number(mean) if not math.isfinite(std) else f"{_number(mean)} ± {_number(std)}"


def _difference(table: pd.DataFrame, group: str, metric: str) -> str:
    note = table.at[group, f"{metric} note"]
    if note == "baseline":
        return "baseline"
    delta = table.at[group, f"{metric} delta"]
    low, high = table.at[group, f"{metric} ci_low"], table.at[group, f"{metric} ci_high"]
    if not math.isfinite(low):
        return f"{delta:+.4f} ({note})"
    marker = f" {SIGNIFICANT}" if table.at[group, f"{metric} significant"] else ""
    return f"{delta:+.4f} [{low:+.4f}, {high:+.4f}]{marker}"


def _cost(column: str, value: float) -> str:
    if not math.isfinite(value):
        return "—"
    return f"{value:,.0f}" if column in ("parameters", "seconds", "train_images_per_second") else f"{value:.3g}"


def table_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Header and rows as text: group, n, per metric mean ± std and Δ [95 % CI], then the costs."""
    header = ["group", "n"]
    for metric in comparison.metrics:
        header += [metric, f"Δ {metric} [95 % CI]"]
    header += list(COST_COLUMNS.values())
    rows = []
    table = comparison.table
    for group in comparison.groups:
        row = [group, str(int(table.at[group, "n"]))]
        for metric in comparison.metrics:
            row += [_mean_std(table, group, metric), _difference(table, group, metric)]
        row += [_cost(c, table.at[group, c]) for c in COST_COLUMNS]
        rows.append(row)
    return header, rows


def legend(comparison: Comparison) -> list[str]:
    """The lines that say how to read the table."""
    keys = ", ".join(f"`{k}`" for k in comparison.keys) or "nothing (one group)"
    return [
        f"- Groups by {keys}, the seed excepted; baseline: `{comparison.baseline}`.",
        "- Metrics: mean ± sample standard deviation over the group's runs. Δ: difference of means to the baseline "
        f"with its 95 % confidence interval (Welch's t-test); {SIGNIFICANT} the interval excludes 0, no marker: "
        "no significant difference; n < 3: too few runs for an interval.",
        "- Costs are group means: parameters, forward GFLOPs per image, wall time of the whole run (s), "
        "training images per second.",
    ]


def unfinished_lines(runs: Sequence[Run]) -> list[str]:
    """The runs left out of the statistics, one line each with the reason."""
    heading = [f"Not counted ({len(runs)} runs):"] if runs else []
    return heading + [f"- `{run.path}` ({run.label}): {run.problem}" for run in runs]


def rich_table(comparison: Comparison) -> Table:
    """The report's table for the console."""
    header, rows = table_rows(comparison)
    finished = len(comparison.runs) - len(comparison.unfinished)
    table = Table(title=f"{finished} runs in {len(comparison.groups)} groups")
    for index, column in enumerate(header):
        table.add_column(column, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def markdown(comparison: Comparison, roots: Sequence[str | Path]) -> str:
    """The report as GitHub markdown."""
    header, rows = table_rows(comparison)
    finished = len(comparison.runs) - len(comparison.unfinished)
    lines = [
        f"# Comparison of {finished} runs in {len(comparison.groups)} groups",
        "",
        "Runs under " + ", ".join(f"`{root}`" for root in roots) + ".",
        "",
        *legend(comparison),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
        *("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows),
    ]
    if comparison.unfinished:
        lines += ["", *unfinished_lines(comparison.unfinished)]
    return "\n".join(lines) + "\n"


def write_csv(comparison: Comparison, path: Path) -> Path:
    """Every figure of the table at full precision, the group's key values as columns."""
    table = comparison.table.copy()
    groups = {run.label: run.group for run in comparison.runs}
    for key in reversed(comparison.keys):
        table.insert(0, key, [groups[label][key] for label in table.index])
    table.to_csv(path)
    return path


def curve_tags(comparison: Comparison) -> list[str]:
    """The validation curves behind the compared metrics (``test/acc1`` and ``best/val/acc1`` → ``val/acc1``)."""
    tags = [m.removeprefix("best/").replace("test/", "val/", 1) for m in comparison.metrics]
    return list(dict.fromkeys(t for t in tags if t.startswith("val/")))


def group_curves(
    comparison: Comparison, tags: Sequence[str], progress: Callable[[Iterable[Run]], Iterable[Run]] = iter
) -> dict[str, dict[str, pd.DataFrame]]:
    """Per tag and group: a frame indexed by epoch with the mean step and the mean, min and max over runs."""
    values: dict[str, dict[str, list[pd.DataFrame]]] = {tag: {} for tag in tags}
    finished = [run for run in comparison.runs if run.finished]
    for run in progress(finished):
        for tag, points in read_curves(run.path, tags).items():
            frame = pd.DataFrame(points, columns=["epoch", "step", "value"]).set_index("epoch")
            values[tag].setdefault(run.label, []).append(frame)
    curves: dict[str, dict[str, pd.DataFrame]] = {}
    for tag, by_group in values.items():
        for group, frames in by_group.items():
            stacked = pd.concat(frames, keys=range(len(frames)), names=["run"])
            per_epoch = stacked.groupby(level="epoch")
            summary = pd.DataFrame(
                {
                    "step": per_epoch["step"].mean().round().astype(int),
                    "mean": per_epoch["value"].mean(),
                    "min": per_epoch["value"].min(),
                    "max": per_epoch["value"].max(),
                    "runs": per_epoch["value"].count(),
                }
            )
            curves.setdefault(tag, {})[group] = summary
    return curves


def plot_curves(curves: dict[str, dict[str, pd.DataFrame]], groups: Sequence[str], path: Path) -> Path:
    """One panel per tag: each group's mean per epoch, with the min–max band over its runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    tags = list(curves)
    fig, axes = plt.subplots(1, max(len(tags), 1), figsize=(6.0 * max(len(tags), 1), 4.2), squeeze=False)
    colours = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")
    for ax, tag in zip(axes[0], tags, strict=False):
        for index, group in enumerate(groups):
            if group not in curves[tag]:
                continue
            frame = curves[tag][group]
            epochs = frame.index.to_numpy() + 1
            colour = colours(index % colours.N)
            ax.plot(epochs, frame["mean"], color=colour, label=f"{group} (n={int(frame['runs'].max())})")
            ax.fill_between(epochs, frame["min"], frame["max"], color=colour, alpha=0.2, linewidth=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(tag)
        ax.set_title(f"{tag}: mean over seeds, min–max band")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.tight_layout()
    columns = max(1, min(len(labels), int(11 * len(tags) // max(map(len, labels), default=1)) or 1))
    fig.legend(
        handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0), ncol=columns, fontsize="small", frameon=False
    )
    fig.savefig(path, dpi=150, bbox_inches="tight")  # the legend below the panels is inside the picture
    plt.close(fig)
    return path


def write_tensorboard(comparison: Comparison, curves: dict[str, dict[str, pd.DataFrame]], output: Path) -> list[Path]:
    """Per group, ``output/<group>/``: the mean curves under the runs' tags, and an HParams entry holding the
    group's values and mean final metrics (named ``hp/…`` as the runs' own)."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    for stale in output.glob("*/events.out.tfevents.*"):
        stale.unlink()  # a previous comparison's groups
    folders = []
    groups = {run.label: run.group for run in comparison.runs}
    for group in comparison.groups:
        folder = output / path_safe(group)
        writer = SummaryWriter(log_dir=str(folder))
        for tag, by_group in curves.items():
            for _, point in by_group.get(group, pd.DataFrame()).iterrows():
                writer.add_scalar(tag, float(point["mean"]), int(point["step"]))
        final = {
            "hp/" + m.replace("/", "_"): float(comparison.table.at[group, f"{m} mean"]) for m in comparison.metrics
        }
        final = {k: v for k, v in final.items() if np.isfinite(v)}
        # Named as Lightning names the runs' own hyper-parameters (model/activation), so they share the columns.
        params = {k.replace(".", "/"): v for k, v in groups[group].items()} or {"group": group}
        params["runs"] = int(comparison.table.at[group, "n"])
        for summary in hparams(params, final):
            writer.file_writer.add_summary(summary)
        for name, value in final.items():
            writer.add_scalar(name, value, 0)
        writer.close()
        folders.append(folder)
    return folders


def write_report(
    comparison: Comparison,
    roots: Sequence[str | Path],
    output: Path,
    progress: Callable[[Iterable[Run]], Iterable[Run]] = iter,
) -> list[Path]:
    """``report.md``, ``report.csv``, ``curves.png`` (when the runs logged curves) and the TensorBoard group folders
    under ``output``; returns the files written."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "report.md").write_text(markdown(comparison, roots))
    written = [output / "report.md", write_csv(comparison, output / "report.csv")]
    curves = group_curves(comparison, curve_tags(comparison), progress)
    if curves:
        written.append(plot_curves(curves, comparison.groups, output / "curves.png"))
    write_tensorboard(comparison, curves, output)
    return written
