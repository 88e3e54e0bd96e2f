"""``vr models`` and ``vr benchmark``: the registered models, and how fast they run here."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .command import ArgumentParser, new_parser, parser_command


def models_parser() -> ArgumentParser:
    parser = new_parser("models", "List the registered models: parameters, input size, GFLOPs, stages.")
    parser.add_argument("pattern", nargs="?", default="*", help="glob over the model names (default: all)")
    parser.add_argument("--no-flops", action="store_true", help="leave out the GFLOPs (faster)")
    return parser


def models(options: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..analysis import model_summary
    from ..models import count_parameters, create_model, list_models

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


def benchmark_parser() -> ArgumentParser:
    from ..benchmark import LIBRARIES, MODES, PRECISION_ALIASES
    from ..inference import BACKENDS

    parser = new_parser(
        "benchmark",
        "Measure how fast models run: inference and training throughput, step-time percentiles, GFLOPs and peak "
        "memory. With --compare, the reference library's implementation too, in alternating rounds; with --backend, "
        "one model's inference backends.",
    )
    parser.add_argument("models", nargs="+", metavar="MODEL", help="registered name, glob ('resnet*') or timm:<name>")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--image-size", "--img-size", type=int, default=None, help="square input side (default: the model's own)"
    )
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--mode", choices=MODES, default="both")
    precisions = [*PRECISION_ALIASES.values(), "auto", *PRECISION_ALIASES]
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
    return parser


def benchmark(options: argparse.Namespace) -> int:
    """The table of :func:`vision_research.benchmark.benchmark_models`, or of the backends with ``--backend``."""
    import dataclasses

    from rich.console import Console

    from ..benchmark import (
        BenchmarkSettings,
        benchmark_models,
        parameter_notes,
        rich_table,
        settings_text,
        write_csv,
        write_markdown,
    )

    # The options are named after the settings' fields (batch_size, precision, ...).
    fields = {f.name for f in dataclasses.fields(BenchmarkSettings)}
    settings = BenchmarkSettings(**{k: v for k, v in vars(options).items() if k in fields}).resolved()
    console = Console()
    if not console.is_terminal:  # a pipe or a file: the whole table, unwrapped, for pasting
        console = Console(width=max(console.width, 200))
    if options.backend:
        return benchmark_backends(options, settings, console)
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


def benchmark_backends(options: argparse.Namespace, settings: Any, console: Any) -> int:
    """``vr benchmark MODEL --backend ...``: the report of :func:`vision_research.benchmark.benchmark_backends`."""
    from ..benchmark import backend_markdown, backend_rich_table, backend_settings_text
    from ..benchmark import benchmark_backends as measure_backends

    conflicts = [flag for flag, used in (("--compare", options.compare), ("--compile", options.compile)) if used]
    if options.mode == "train":
        conflicts.append("--mode train")
    if conflicts or options.csv:
        raise ConfigError(f"--backend measures inference backends; drop {', '.join(conflicts or ['--csv'])}")
    if len(options.models) != 1 or any(c in options.models[0] for c in "*?["):
        raise ConfigError(f"--backend measures one model; got {' '.join(options.models)}")
    if min(options.batch_sizes) < 1:
        raise ConfigError(f"--batch-sizes must be positive integers; got {options.batch_sizes}")
    report = measure_backends(
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


MODELS = parser_command("models", models_parser, models)
BENCHMARK = parser_command("benchmark", benchmark_parser, benchmark)
