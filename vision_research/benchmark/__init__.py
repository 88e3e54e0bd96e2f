"""``vr benchmark``: throughput, step-time percentiles, GFLOPs and peak memory — ours next to a reference.

One job per module, each importing only those before it: :mod:`.settings` (what is measured and how, checked),
:mod:`.references` (torchvision's and timm's implementations), :mod:`.measurement` (building, stepping, timing and
peak memory; the method is described there) and :mod:`.report` (the table, markdown and CSV); ``--backend``:
:mod:`.peak` (this machine's matrix-multiply peak) and :mod:`.backends` (one model's inference backends). The names
below are imported from their module on first use: the settings' choices cost no torch import (``--help``).
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "backends": (
            "BackendReport",
            "BackendRow",
            "backend_markdown",
            "backend_rich_table",
            "backend_settings_text",
            "benchmark_backends",
        ),
        "measurement": (
            "BenchmarkResult",
            "BenchmarkStep",
            "Measurement",
            "benchmark_model",
            "benchmark_models",
            "build_subject",
            "inference_step",
            "step_peak_bytes",
            "synthetic_batch",
            "train_step",
        ),
        "references": ("reference_model",),
        "report": ("markdown_table", "parameter_notes", "rich_table", "settings_text", "write_csv", "write_markdown"),
        "settings": ("LIBRARIES", "MODES", "OURS", "PRECISION_ALIASES", "BenchmarkSettings", "expand_model_names"),
    },
)
