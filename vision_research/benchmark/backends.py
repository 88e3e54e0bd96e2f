"""``vr benchmark MODEL --backend ...``: one model's inference backends measured in one run.

Each backend (:mod:`vision_research.inference`) is built from the same seeded model for each batch size (its
build time is reported: compiling and quantising are paid once per shape), checked against eager on the benchmark
batch (the largest absolute difference of the logits, relative to their scale: int8 shows its rounding here), then
timed in alternating rounds like ``vr benchmark``'s implementations (:func:`~.measurement.time_steps`). ``int8`` is
calibrated on ``CALIBRATION_BATCHES`` seeded random batches: enough to time it, not to judge its accuracy — that is
``vr eval backend=int8`` on real data. GFLOP/s is img/s × the model's GFLOPs per image; the fraction of the fp32
and bf16 matrix-multiply peaks (:mod:`.peak`) is measured in the same run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from ..inference import BACKENDS, build_forward, check_backend
from .measurement import autocast, build_subject, logits_of, num_threads, summarize, synthetic_batch, time_steps
from .peak import matmul_peaks
from .report import markdown_rows, rich_rows, settings_text
from .settings import OURS, BenchmarkSettings

CALIBRATION_BATCHES = 4
EXACT_BACKENDS = ("eager", "fused", "compile")  # run under the settings' autocast; the others in their own dtype


@dataclass(frozen=True)
class BackendRow:
    """One backend at one batch size."""

    backend: str
    batch_size: int
    build_seconds: float
    img_per_s: float
    p50_ms: float
    p90_ms: float
    gflops_per_s: float
    max_abs_diff: float  # of the logits against eager, ÷ max(1, their largest magnitude)
    speedup: float = 1.0  # img/s ÷ eager's at the same batch size


@dataclass(frozen=True)
class BackendReport:
    """The model, its GFLOPs per image, the matmul peaks (GFLOP/s by dtype) and a row per backend and batch size."""

    model: str
    input_size: tuple[int, int, int]
    gflops: float
    peaks: dict[str, float]
    rows: list[BackendRow]
    settings: BenchmarkSettings


def benchmark_backends(
    name: str,
    backends: Sequence[str],
    batch_sizes: Sequence[int],
    settings: BenchmarkSettings,
    progress: Callable[[str], None] | None = None,
) -> BackendReport:
    """Measure ``name`` on each of ``backends`` (eager is always measured, first) at each of ``batch_sizes``."""
    backends = list(dict.fromkeys(["eager", *(check_backend(b) for b in backends)]))
    settings = replace(settings.resolved(), mode="inference")
    say = progress or (lambda text: None)
    with num_threads(settings.threads):
        say("measuring the matrix-multiply peaks")
        peaks = matmul_peaks(settings.device)
        subject = build_subject(name, OURS, settings)
        rows: list[BackendRow] = []
        for batch_size in batch_sizes:
            images, _ = synthetic_batch(
                batch_size, subject.input_size, settings.num_classes, settings.device, settings.channels_last
            )
            with torch.inference_mode():  # as evaluation's batches: the graphs are compiled for inference tensors
                images = images.clone()
            runs, built = {}, {}
            for backend in backends:
                say(f"building {backend} for batch {batch_size}")
                runs[backend], built[backend] = _built(subject.model, backend, images, settings)
            rows += _timed(runs, built, images, subject.gflops, settings)
    return BackendReport(name, subject.input_size, subject.gflops, peaks, rows, settings)


def _built(
    model: torch.nn.Module, backend: str, images: torch.Tensor, settings: BenchmarkSettings
) -> tuple[Callable[[], torch.Tensor], float]:
    """The timed call of ``backend`` on ``images`` and its build time in seconds."""
    generator = torch.Generator().manual_seed(settings.seed + 1)
    calibration = [torch.randn(images.shape, generator=generator) for _ in range(CALIBRATION_BATCHES)]
    start = time.perf_counter()
    forward = build_forward(model, backend, images, calibration)
    seconds = time.perf_counter() - start
    precision = settings.precision if backend in EXACT_BACKENDS else "32-true"

    def run() -> torch.Tensor:
        with torch.inference_mode(), autocast(settings.device, precision):
            return logits_of(forward(images))[0]

    return run, seconds


def _timed(
    runs: dict[str, Callable[[], torch.Tensor]],
    built: dict[str, float],
    images: torch.Tensor,
    gflops: float,
    settings: BenchmarkSettings,
) -> list[BackendRow]:
    """Warm each backend up, compare its logits with eager's, time them in alternating rounds."""
    outputs = {}
    for backend, run in runs.items():
        for _ in range(settings.warmup):
            run()
        outputs[backend] = run().float()
    reference = outputs["eager"]
    scale = max(1.0, reference.abs().max().item())
    seconds: dict[str, list[list[float]]] = {backend: [] for backend in runs}
    for _ in range(settings.rounds):
        for backend, run in runs.items():
            seconds[backend].append(time_steps(run, settings.steps, settings.device))
    rows = []
    for backend in runs:
        measured = summarize(seconds[backend], len(images), None)
        rows.append(
            BackendRow(
                backend,
                len(images),
                built[backend],
                measured.img_per_s,
                measured.p50_ms,
                measured.p90_ms,
                measured.img_per_s * gflops,
                (outputs[backend] - reference).abs().max().item() / scale,
            )
        )
    eager = rows[0].img_per_s
    return [replace(row, speedup=row.img_per_s / eager) for row in rows]


def backend_table(report: BackendReport) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the report: a row per backend and batch size."""
    header = [
        "backend",
        "batch",
        "build s",
        "img/s",
        "× eager",
        "latency ms\np50/p90",
        "GFLOP/s",
        "÷ fp32\npeak",
        "÷ bf16\npeak",
        "max Δ logits\n÷ scale",
    ]
    rows = [
        [
            row.backend,
            str(row.batch_size),
            f"{row.build_seconds:.1f}",
            f"{row.img_per_s:.1f}",
            f"{row.speedup:.2f}×",
            f"{row.p50_ms:.1f}/{row.p90_ms:.1f}",
            f"{row.gflops_per_s:.1f}",
            f"{row.gflops_per_s / report.peaks['fp32']:.2f}",
            f"{row.gflops_per_s / report.peaks['bf16']:.2f}",
            f"{row.max_abs_diff:.1e}",
        ]
        for row in report.rows
    ]
    return header, rows


def backend_caption(report: BackendReport) -> str:
    """The model, its input and GFLOPs, the peaks and what the backends are."""
    size = "×".join(map(str, report.input_size))
    peaks = ", ".join(f"{name} {value:.1f}" for name, value in report.peaks.items())
    used = {row.backend for row in report.rows}
    kinds = "; ".join(f"{name}: {text}" for name, text in BACKENDS.items() if name in used)
    return (
        f"{report.model} at {size}, {report.gflops:.3g} GFLOPs per image (2 × multiply-adds); matrix-multiply peak "
        f"GFLOP/s: {peaks}. Latency: one whole batch. {kinds}."
    )


def backend_settings_text(report: BackendReport) -> str:
    """The settings line, with the batch sizes measured."""
    batches = ", ".join(dict.fromkeys(str(row.batch_size) for row in report.rows))
    return settings_text(report.settings, batch=batches)


def backend_rich_table(report: BackendReport):
    """The report as a ``rich`` table."""
    return rich_rows(*backend_table(report), backend_caption(report))


def backend_markdown(report: BackendReport) -> str:
    """The settings line, the GitHub table and the caption."""
    lines = [backend_settings_text(report), "", *markdown_rows(*backend_table(report)), "", backend_caption(report)]
    return "\n".join(lines) + "\n"
