"""The report of ``vr benchmark``: the settings line, the table (rich and GitHub markdown), the notes on parameter
counts, and the CSV."""

from __future__ import annotations

import contextlib
import csv
import itertools
import platform
from collections.abc import Sequence
from pathlib import Path

import torch

from .measurement import BenchmarkResult, Measurement
from .settings import BenchmarkSettings


def device_name(device: str) -> str:
    """The GPU's or the CPU's model name, for the report."""
    if device == "cuda":
        return torch.cuda.get_device_name()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def settings_text(settings: BenchmarkSettings, batch: str | None = None) -> str:
    """One line that makes a pasted table self-describing (``settings`` resolved; ``batch``: the batch sizes, when
    not the settings' one)."""
    size = f"{settings.image_size}×{settings.image_size}" if settings.image_size else "each model's default"
    return (
        f"torch {torch.__version__} · {settings.device} ({device_name(settings.device)}) · "
        f"threads {settings.threads} · precision {settings.precision} · "
        f"channels-last {'on' if settings.channels_last else 'off'} · compile {'on' if settings.compile else 'off'} · "
        f"batch {batch or settings.batch_size} · size {size} · warmup {settings.warmup}, "
        f"{settings.rounds} rounds × {settings.steps} steps"
    )


def table_rows(results: Sequence[BenchmarkResult], settings: BenchmarkSettings) -> tuple[list[str], list[list[str]]]:
    """Header (two-line names) and rows of the report: one row per model and implementation, and a ratio row
    after each compared pair."""
    header = ["model", "implementation", "input", "params", "GFLOPs"]
    short = {"inference": "infer", "train": "train"}
    for mode in settings.modes:
        header += [f"{short[mode]}\nimg/s", f"{short[mode]} step ms\np50/p90/p99", f"{short[mode]}\npeak MB"]
    rows: list[list[str]] = []
    pending_ratio: list[str] | None = None  # printed after the reference's row
    for result in results:
        row = [
            result.model,
            result.implementation,
            "×".join(map(str, result.input_size)),
            f"{result.params:,}",
            f"{result.gflops:.3g}",
        ]
        for mode in settings.modes:
            row += _measurement_cells(result.inference if mode == "inference" else result.train)
        rows.append(row)
        if pending_ratio is not None:
            rows.append(pending_ratio)
            pending_ratio = None
        if result.reference:
            pending_ratio = ["", f"ratio ours / {result.reference}", "", "", ""]
            for mode in settings.modes:
                ratio = result.infer_ratio if mode == "inference" else result.train_ratio
                pending_ratio += [f"{ratio:.2f}×" if ratio is not None else "-", "", ""]
    if pending_ratio is not None:
        rows.append(pending_ratio)
    return header, rows


def _measurement_cells(measurement: Measurement | None) -> list[str]:
    if measurement is None:
        return ["-", "-", "-"]
    m = measurement
    memory = f"{m.peak_mem_mb:.1f}" if m.peak_mem_mb is not None else "-"
    return [f"{m.img_per_s:.1f}", f"{m.p50_ms:.1f}/{m.p90_ms:.1f}/{m.p99_ms:.1f}", memory]


def parameter_notes(results: Sequence[BenchmarkResult]) -> list[str]:
    """A note for each comparison whose two implementations differ in parameter count."""
    notes = []
    for ours, reference in itertools.pairwise(results):
        if ours.reference and ours.reference == reference.implementation and ours.params != reference.params:
            notes.append(
                f"note: {ours.model} has {ours.params:,} parameters here and {reference.params:,} in "
                f"{reference.implementation} ({ours.params - reference.params:+,})"
            )
    return notes


TEXT_COLUMNS = ("model", "implementation", "input", "backend")  # left-aligned; the others are numbers


def rich_rows(header: Sequence[str], rows: Sequence[Sequence[str]], caption: str):
    """A ``rich`` table titled ``vr benchmark`` (numbers right-aligned)."""
    from rich.table import Table

    table = Table(title="vr benchmark", caption=caption)
    for column in header:
        table.add_column(column, justify="left" if column in TEXT_COLUMNS else "right")
    for row in rows:
        table.add_row(*row)
    return table


def markdown_rows(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A GitHub table's lines (two-line column names joined, numbers right-aligned)."""
    right = {i for i, column in enumerate(header) if column not in TEXT_COLUMNS}
    return [
        "| " + " | ".join(h.replace("\n", " ").replace("|", "\\|") for h in header) + " |",
        "|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|",
        *("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows),
    ]


def rich_table(results: Sequence[BenchmarkResult], settings: BenchmarkSettings):
    """The report as a ``rich`` table (numbers right-aligned)."""
    caption = "GFLOPs: 2 × multiply-adds per image; step ms: one whole batch"
    return rich_rows(*table_rows(results, settings), caption)


def write_csv(results: Sequence[BenchmarkResult], path: str | Path) -> Path:
    """One row per (model, implementation) with every field; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [r.row() for r in results]
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]) if rows else ["model"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def markdown_table(results: Sequence[BenchmarkResult], settings: BenchmarkSettings) -> str:
    """The settings line, then the report as a GitHub table."""
    lines = [settings_text(settings), "", *markdown_rows(*table_rows(results, settings)), "", *parameter_notes(results)]
    return "\n".join(lines).rstrip() + "\n"


def write_markdown(results: Sequence[BenchmarkResult], settings: BenchmarkSettings, path: str | Path) -> Path:
    """The settings line and the GitHub table in ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown_table(results, settings))
    return path
