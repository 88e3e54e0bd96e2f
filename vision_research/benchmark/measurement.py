"""Measuring ``vr benchmark``'s figures: each model built and prepared, its inference and training steps, their
timing in alternating rounds and their peak memory, gathered into :class:`BenchmarkResult` records.

The method follows timm's ``benchmark.py`` (warm-up, timed steps, a synchronised clock), made fit for comparing
two implementations of one architecture:

- **Steps.** Inference is ``model(x)`` under ``torch.inference_mode()`` in eval mode. A training step is forward,
  cross-entropy, backward and an SGD step (momentum 0.9) in train mode; the gradients are set to ``None`` at the
  end of the step. Mixed precision autocasts to ``AUTOCAST_DTYPES[precision]`` on the device while the weights
  stay fp32 (Lightning's ``*-mixed``); ``16-mixed`` training scales the loss with ``torch.amp.GradScaler``.
  (Lightning's Trainer would switch ``16-mixed`` on CPU to bf16; here it runs what was asked: fp16 autocast.)
- **Timing.** Each implementation warms up, then the timed rounds *alternate* between implementations (ours
  round 1, reference round 1, ours round 2, ...) so that drift — thermal, another process — touches both.
  CUDA is synchronised before the clock is read. ``img_per_s`` is the median over rounds of one round's
  ``batch × steps / seconds``; the step-time percentiles are over every timed step of every round.
- **Input.** A seeded random batch (and seeded model initialisation), so that two runs see the same numbers.
- **GFLOPs** per image at the benchmark resolution, from :func:`~vision_research.analysis.model_summary`
  (2 × multiply-adds; counted once, in fp32, on the uncompiled model).
- **Peak memory** (``peak_mem_mb``, 10⁶ bytes) of one step = the tensors the benchmark keeps between steps
  (weights, buffers, optimizer state, the batch) + the peak of what the step allocates on top of them. On CUDA
  the step's part is ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``, minus what was
  allocated before the step (so a second model on the same GPU is not counted). On CPU it is the running sum
  of the allocation and free events the profiler records (``profile_memory=True``), in time order, at its
  maximum. That counts PyTorch's CPU allocator only: workspaces that oneDNN or other libraries allocate
  themselves, the allocator's slack and Python objects are not included, so it is a lower bound, not the RSS.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError, first_line
from ..speed import AUTOCAST_DTYPES, to_channels_last
from .references import check_library, check_reference, reference_model
from .settings import OURS, BenchmarkSettings, expand_model_names

MB = 1e6


# --- results ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """One implementation in one mode: throughput, step times (whole batch, ms) and peak memory."""

    img_per_s: float  # median over rounds
    round_img_per_s: tuple[float, ...]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    peak_mem_mb: float | None  # None when the profiler gave no memory events


@dataclass
class BenchmarkResult:
    """One model in one implementation (ours or the reference library's), under ``settings`` (resolved)."""

    model: str
    implementation: str  # "vision_research", "torchvision" or "timm"
    settings: BenchmarkSettings
    input_size: tuple[int, int, int]
    params: int
    gflops: float  # per image
    inference: Measurement | None = None
    train: Measurement | None = None
    reference: str | None = None  # on our row when compared: the library the ratios are against
    infer_ratio: float | None = None  # ours / reference img/s (> 1: ours is faster)
    train_ratio: float | None = None

    def row(self) -> dict[str, object]:
        """A flat record for CSV: identity, settings, then the figures of each mode."""
        s = self.settings
        row: dict[str, object] = {
            "model": self.model,
            "implementation": self.implementation,
            "params": self.params,
            "gflops": self.gflops,
            "input_size": "x".join(map(str, self.input_size)),
            "batch_size": s.batch_size,
            "precision": s.precision,
            "device": s.device,
            "channels_last": s.channels_last,
            "compile": s.compile,
            "threads": s.threads,
            "warmup": s.warmup,
            "steps": s.steps,
            "rounds": s.rounds,
            "torch": torch.__version__,
        }
        for prefix, measurement in (("infer", self.inference), ("train", self.train)):
            row[f"{prefix}_img_s"] = _rounded(measurement and measurement.img_per_s)
            row[f"{prefix}_rounds_img_s"] = (
                " ".join(f"{v:.2f}" for v in measurement.round_img_per_s) if measurement else ""
            )
            for name in ("p50_ms", "p90_ms", "p99_ms", "peak_mem_mb"):
                row[f"{prefix}_{name}"] = _rounded(measurement and getattr(measurement, name))
        row["reference"] = self.reference or ""
        row["infer_ratio"] = _rounded(self.infer_ratio, 4)
        row["train_ratio"] = _rounded(self.train_ratio, 4)
        return row


def _rounded(value: float | None, digits: int = 3) -> float | str:
    return "" if value is None else round(value, digits)


# --- building what is measured --------------------------------------------------------------------------------


@dataclass
class Subject:
    """A model ready to measure, with the figures taken before it was moved, converted and compiled."""

    name: str
    implementation: str
    model: nn.Module
    input_size: tuple[int, int, int]
    params: int
    gflops: float


def build_subject(
    name: str, implementation: str, settings: BenchmarkSettings, input_size: tuple[int, int, int] | None = None
) -> Subject:
    """Build ``name`` (ours or the reference), count parameters and GFLOPs, then prepare it for ``settings``.

    ``input_size`` (C, H, W) defaults to ours: its ``default_cfg`` with ``settings.image_size`` if given.
    """
    from ..models import count_parameters, create_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        if implementation == OURS:
            model = create_model(name, num_classes=settings.num_classes)
        else:
            channels = input_size[0] if input_size else 3
            model = reference_model(name, implementation, settings.num_classes, in_chans=channels)
    if input_size is None:
        channels, height, width = model.default_cfg["input_size"]
        size = settings.image_size
        input_size = (channels, size or height, size or width)
    params = count_parameters(model)
    gflops = gflops_per_image(model, input_size, f"{name} ({implementation})")
    return Subject(name, implementation, prepare_model(model, settings), input_size, params, gflops)


def gflops_per_image(model: nn.Module, input_size: tuple[int, int, int], label: str = "the model") -> float:
    """GFLOPs (2 × multiply-adds) of one image of ``input_size``; a size the model cannot take is a ConfigError."""
    from ..analysis import model_summary

    try:
        return model_summary(model, input_size).total_flops / 1e9
    except (RuntimeError, ValueError) as err:
        raise ConfigError(
            f"{label} does not run on {'×'.join(map(str, input_size))} inputs: {first_line(err)}"
        ) from None


def prepare_model(model: nn.Module, settings: BenchmarkSettings) -> nn.Module:
    """``model`` on the device, in channels-last if asked, compiled in place if asked (state-dict keys kept)."""
    model = model.to(settings.device)
    if settings.channels_last:
        model = to_channels_last(model)
    if settings.compile:
        model.compile()
    return model


def synthetic_batch(
    batch_size: int,
    input_size: tuple[int, int, int],
    num_classes: int,
    device: str,
    channels_last: bool = True,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded batch of normal-noise images and uniform class targets on ``device``."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, *input_size, generator=generator)
    targets = torch.randint(0, num_classes, (batch_size,), generator=generator)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images.to(device), targets.to(device)


# --- one step ---------------------------------------------------------------------------------------------------


@dataclass
class BenchmarkStep:
    """One benchmarked step: ``run()`` performs it and returns the (detached) logits; what it keeps alive."""

    run: Callable[[], torch.Tensor]
    model: nn.Module
    inputs: tuple[torch.Tensor, ...]
    optimizer: torch.optim.Optimizer | None = None

    def resident_bytes(self) -> int:
        """Bytes of the tensors that live between steps: weights, buffers, optimizer state, the batch."""
        tensors = [*self.model.parameters(), *self.model.buffers(), *self.inputs]
        if self.optimizer is not None:
            tensors += [v for state in self.optimizer.state.values() for v in state.values() if torch.is_tensor(v)]
        unique = {(t.device, t.data_ptr()): t for t in tensors}
        return sum(t.numel() * t.element_size() for t in unique.values())


def autocast(device: str, precision: str) -> contextlib.AbstractContextManager:
    """Autocast to the precision's dtype on ``device``, or nothing for ``32-true``."""
    dtype = AUTOCAST_DTYPES.get(precision)
    return torch.autocast(device, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def logits_of(output: object) -> list[torch.Tensor]:
    """The logits tensors in a model's output: the tensor itself, or those of a tuple (main and auxiliary heads)."""
    if torch.is_tensor(output):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return [t for t in output if torch.is_tensor(t)]
    raise TypeError(f"cannot find logits in a model output of type {type(output).__name__}")


def classification_loss(output: object, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy summed over every logits tensor the model returns (GoogLeNet's auxiliary heads train too)."""
    return sum(F.cross_entropy(logits, targets) for logits in logits_of(output))


def inference_step(model: nn.Module, images: torch.Tensor, settings: BenchmarkSettings) -> BenchmarkStep:
    """``model(images)`` in eval mode under ``torch.inference_mode()`` and the settings' autocast."""
    model.eval()
    device, precision = settings.device, settings.precision

    def run() -> torch.Tensor:
        with torch.inference_mode(), autocast(device, precision):
            return logits_of(model(images))[0]

    return BenchmarkStep(run, model, (images,))


def train_step(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, settings: BenchmarkSettings
) -> BenchmarkStep:
    """Forward, cross-entropy, backward and an SGD step (momentum 0.9) in train mode; gradients then set to None."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler(settings.device) if settings.precision == "16-mixed" else None
    device, precision = settings.device, settings.precision

    def run() -> torch.Tensor:
        with autocast(device, precision):
            output = model(images)
            loss = classification_loss(output, targets)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return logits_of(output)[0].detach()

    return BenchmarkStep(run, model, (images, targets), optimizer)


# --- timing and memory ------------------------------------------------------------------------------------------


def synchronize(device: str) -> None:
    """Wait for queued GPU work, so that the clock measures it."""
    if device == "cuda":
        torch.cuda.synchronize()


def time_steps(run: Callable[[], object], count: int, device: str) -> list[float]:
    """Seconds taken by each of ``count`` calls of ``run`` (GPU work included)."""
    seconds = []
    synchronize(device)
    for _ in range(count):
        start = time.perf_counter()
        run()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def step_peak_bytes(run: Callable[[], object], device: str) -> int | None:
    """The peak of the memory one call of ``run`` allocates beyond what was allocated before it (None: unknown)."""
    if device == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run()
        synchronize(device)
        return max(torch.cuda.max_memory_allocated() - before, 0)
    return _cpu_step_peak_bytes(run)


def _cpu_step_peak_bytes(run: Callable[[], object]) -> int | None:
    """The maximum running sum of the CPU allocation events the profiler records during ``run()``."""
    from torch.profiler import ProfilerActivity, profile

    with _quiet_kineto(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()  # the result is dropped inside the profiled region, so its free is recorded too
    results = getattr(prof.profiler, "kineto_results", None)
    if results is None:
        return None
    cpu = torch.autograd.DeviceType.CPU
    events = [e for e in results.events() if e.name() == "[memory]" and e.device_type() == cpu]
    if not events:
        return None
    events.sort(key=lambda e: e.start_ns())  # stable: simultaneous events keep their recorded order
    return max(0, max(itertools.accumulate(e.nbytes() for e in events)))


@contextlib.contextmanager
def _quiet_kineto() -> Iterator[None]:
    """Silence Kineto's ``profiler_start``/``profiler_stop`` lines on stderr (it reads the level once, at first use)."""
    previous = os.environ.get("KINETO_LOG_LEVEL")
    if previous is None:
        os.environ["KINETO_LOG_LEVEL"] = "6"  # above ERROR (4) and USDT (5): nothing
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("KINETO_LOG_LEVEL", None)


def peak_memory_mb(step: BenchmarkStep, device: str) -> float | None:
    """Resident tensors + the peak a step allocates on top of them, in MB (10⁶ bytes)."""
    extra = step_peak_bytes(step.run, device)
    return None if extra is None else (step.resident_bytes() + extra) / MB


def summarize(round_seconds: list[list[float]], batch_size: int, peak_mem_mb: float | None) -> Measurement:
    """Median-over-rounds throughput and step-time percentiles from the seconds of each round's steps."""
    per_round = tuple(batch_size * len(times) / sum(times) for times in round_seconds)
    p50, p90, p99 = np.percentile([t * 1e3 for times in round_seconds for t in times], [50, 90, 99])
    return Measurement(statistics.median(per_round), per_round, float(p50), float(p90), float(p99), peak_mem_mb)


def measure(steps: Sequence[BenchmarkStep], settings: BenchmarkSettings) -> list[Measurement]:
    """Warm each step up, time them in alternating rounds, then measure each one's peak memory."""
    device = settings.device
    for step in steps:
        for _ in range(settings.warmup):
            step.run()
    round_seconds: list[list[list[float]]] = [[] for _ in steps]
    for _ in range(settings.rounds):
        for seconds, step in zip(round_seconds, steps, strict=True):
            seconds.append(time_steps(step.run, settings.steps, device))
    return [
        summarize(seconds, settings.batch_size, peak_memory_mb(step, device))
        for seconds, step in zip(round_seconds, steps, strict=True)
    ]


# --- the benchmark ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def num_threads(threads: int | None) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` for the duration (None: unchanged)."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def benchmark_model(name: str, settings: BenchmarkSettings, compare: str | None = None) -> list[BenchmarkResult]:
    """Measure one model (``settings`` resolved); with ``compare``, the reference too, in alternating rounds."""
    subjects = [build_subject(name, OURS, settings)]
    if compare is not None:
        subjects.append(build_subject(name, compare, settings, input_size=subjects[0].input_size))
    images, targets = synthetic_batch(
        settings.batch_size,
        subjects[0].input_size,
        settings.num_classes,
        settings.device,
        settings.channels_last,
        settings.seed,
    )
    results = [BenchmarkResult(s.name, s.implementation, settings, s.input_size, s.params, s.gflops) for s in subjects]
    if "inference" in settings.modes:
        steps = [inference_step(s.model, images, settings) for s in subjects]
        for result, measurement in zip(results, _measure_or_explain(steps, settings, name, "inference"), strict=True):
            result.inference = measurement
    if "train" in settings.modes:
        steps = [train_step(s.model, images, targets, settings) for s in subjects]
        for result, measurement in zip(results, _measure_or_explain(steps, settings, name, "train"), strict=True):
            result.train = measurement
    if compare is not None:
        set_ratios(results[0], results[1])
    return results


def _measure_or_explain(
    steps: Sequence[BenchmarkStep], settings: BenchmarkSettings, name: str, mode: str
) -> list[Measurement]:
    """:func:`measure`, with a step that cannot run (batch norm on one value, out of memory) as a ConfigError."""
    try:
        return measure(steps, settings)
    except (RuntimeError, ValueError) as err:
        raise ConfigError(
            f"the {mode} step of {name} failed at batch size {settings.batch_size} "
            f"({settings.precision}, {settings.device}): {first_line(err)}"
        ) from err


def set_ratios(ours: BenchmarkResult, reference: BenchmarkResult) -> None:
    """Store ours/reference median img/s on our result, for each measured mode."""
    ours.reference = reference.implementation
    if ours.inference and reference.inference:
        ours.infer_ratio = ours.inference.img_per_s / reference.inference.img_per_s
    if ours.train and reference.train:
        ours.train_ratio = ours.train.img_per_s / reference.train.img_per_s


def benchmark_models(
    names: Sequence[str],
    settings: BenchmarkSettings | None = None,
    compare: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[BenchmarkResult]:
    """Benchmark each model (names or globs) under ``settings``; with ``compare`` (torchvision or timm) each
    model's reference implementation too. Every name is checked before anything runs."""
    settings = (settings or BenchmarkSettings()).resolved()
    names = expand_model_names(names)
    if compare is not None:
        check_library(compare)
        for name in names:
            check_reference(name, compare)
    results: list[BenchmarkResult] = []
    with num_threads(settings.threads):
        for name in names:
            if progress is not None:
                progress(f"benchmarking {name}" + (f" and {compare}'s" if compare else ""))
            results.extend(benchmark_model(name, settings, compare))
    return results
