"""``export()``: a checkpoint loaded as ``vr predict`` loads it, written in one format, checked, described."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from ..errors import ConfigError, check_value, unknown_name_error
from ..paths import check_can_create
from ..run_dir import load_task, run_input_size
from .formats import FORMATS
from .graph import inference_graph
from .sidecar import graph_facts, task_facts, write_sidecar
from .verify import TOLERANCES, compare, verification_images

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class ExportReport:
    """Where the file and its sidecar went, and the check: the largest absolute difference to the eager model on
    ``metadata["verification"]["images"]`` images and the tolerance it passed."""

    path: Path
    sidecar: Path
    format: str
    dtype: str
    opset: int | None
    max_abs_diff: float
    tolerance: float
    metadata: dict[str, Any]


def output_path(checkpoint: Path, suffix: str, dtype: str, output: str | Path | None) -> Path:
    """``output``, or ``<checkpoint stem>[-<dtype>]<suffix>`` beside the checkpoint; its folder must be one this
    process can make or write into (checked before any work)."""
    if output is None:
        path = checkpoint.with_name(checkpoint.stem + ("" if dtype == "fp32" else f"-{dtype}") + suffix)
    else:
        path = Path(output)
        if path.suffix != suffix:
            raise ConfigError(f"output={output}: this format writes {suffix} files; name it <name>{suffix}")
    check_can_create(path.parent, "output")
    return path


def _check_options(format: str, dtype: str, dynamic_batch: bool, opset: int | None, tolerance: float | None) -> None:
    check_value("dynamic_batch", dynamic_batch, "true or false")
    check_value("opset", opset, "an integer or null")
    check_value("tolerance", tolerance, "a number or null")
    if format not in FORMATS:
        raise unknown_name_error("export format", format, FORMATS)
    if dtype not in DTYPES:
        raise ConfigError(f"dtype={dtype}: choose {', '.join(DTYPES)}")
    if opset is not None and format != "onnx":
        raise ConfigError(f"opset={opset}: the opset is an ONNX setting; drop it for format={format}")
    if tolerance is not None and not tolerance > 0:
        raise ConfigError(f"tolerance={tolerance}: must be a positive number")


def export(
    ckpt_path: str | Path,
    format: str = "onnx",
    output: str | Path | None = None,
    dtype: str = "fp32",
    dynamic_batch: bool = False,
    opset: int | None = None,
    tolerance: float | None = None,
    run_cfg: DictConfig | None = None,
) -> ExportReport:
    """Export the task of ``ckpt_path`` (``formats.FORMATS``: onnx, torchscript, exported_program) in ``dtype``,
    with a free batch axis when ``dynamic_batch`` (else a batch of one), ONNX in ``opset`` (default: the
    exporter's); then run the file and the eager task on the same images (``verify.py``) and write the sidecar.

    Bad input is a one-line ``ConfigError`` / ``DataError``: an output folder that cannot be written (found before
    any work), an unusable checkpoint (``load_task``'s), an unknown format or dtype, an opset the model cannot be
    written in, an operator the format cannot express, and a difference above ``tolerance`` (default
    ``verify.TOLERANCES[dtype]``; the file and a sidecar with ``"passed": false`` stay for inspection). ``run_cfg``:
    the run's config as composed with overrides (default: the run's ``config.yaml``; it gives the input size of tasks
    not sized by their own hparams). The arguments up to ``tolerance`` are the keys of ``configs/export.yaml``.
    """
    _check_options(format, dtype, dynamic_batch, opset, tolerance)
    spec = FORMATS[format]
    spec.require()
    checkpoint = Path(ckpt_path)
    path = output_path(checkpoint, spec.suffix, dtype, output)
    cfg, task = load_task(checkpoint)
    cfg = cfg if run_cfg is None else run_cfg
    facts = task_facts(cfg, task, checkpoint)
    task = task.eval().to(DTYPES[dtype])
    images = verification_images(task.hparams.in_chans, run_input_size(cfg, task), DTYPES[dtype])
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        graph = inference_graph(task, images if dynamic_batch else images[:1], dynamic_batch)
        opset = spec.save(graph, path, opset)
    tolerance = TOLERANCES[dtype] if tolerance is None else tolerance
    check = {**compare(graph, spec.load(path), images, tolerance), "runtime": spec.runtime}
    metadata = {
        "format": format,
        "file": path.name,
        "dtype": dtype,
        "opset": opset,
        "exporter": spec.exporter,
        **facts,
        **graph_facts(graph),
        "verification": check,
    }
    sidecar = write_sidecar(path, metadata)
    if not check["passed"]:
        other = "another format" + ("" if dtype == "fp32" else " or dtype=fp32")
        raise ConfigError(
            f"{path}: differs from the eager model by {check['max_abs_diff']:.3g} (max abs over {check['images']} "
            f"images), above tolerance {tolerance:g} x max(1, output scale {check['output_scale']:.3g}); try "
            f"{other}, or pass tolerance=... if that difference is acceptable (sidecar: {sidecar}, passed: false)"
        )
    return ExportReport(path, sidecar, format, dtype, opset, check["max_abs_diff"], tolerance, metadata)
