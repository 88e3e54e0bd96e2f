"""Inference backends (vision_research.inference): each gives the eager outputs — folded batch norms and compiled
graphs to float tolerance, int8 to its rounding — on the four exported tasks; short and long batches through a
graph built for one size; `vr benchmark --backend` reports what it defines; one-line errors.

The tasks are those of tests/export/test_export.py (a quarter-width ResNet-18 and heads on it, 32-64 px). Compiling and
quantising take 5-15 s per model here, so the default selection quantises the classifier only (PT2E, then
compiled); every task's compiled, ONNX and int8 graphs are `slow`.
"""

from __future__ import annotations

import builtins

import pytest
import torch
from torch import nn

from tests.export.test_export import TASKS
from vision_research.benchmark import BenchmarkSettings, benchmark_backends
from vision_research.benchmark.peak import _best_seconds, matmul_peak_gflops
from vision_research.cli import main
from vision_research.errors import ConfigError
from vision_research.export.graph import as_list
from vision_research.inference import (
    FixedBatch,
    build_forward,
    build_from_batches,
    count_batch_norms,
    fold_batch_norms,
)
from vision_research.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")

TOLERANCE = 1e-4  # of max(1, output scale), as vr export's check
INT8_TOLERANCE = 0.1  # int8 activations: 1/255 of their range per layer, compounded over a ResNet-18


def _task(name: str) -> tuple[nn.Module, int]:
    torch.manual_seed(0)
    _, size, build = TASKS[name]
    return build().eval().to(memory_format=torch.channels_last), size


def _images(count: int, size: int, seed: int) -> torch.Tensor:
    return torch.randn(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _relative_difference(found: object, expected: object) -> float:
    found, expected = as_list(found), as_list(expected)
    assert [f.shape for f in found] == [e.shape for e in expected]
    scale = max(1.0, *(e.abs().max().item() for e in expected))
    return max((f - e).abs().max().item() for f, e in zip(found, expected, strict=True)) / scale


def _check_backend(name: str, backend: str, tolerance: float) -> None:
    """``backend`` built for batches of 2 gives the eager task's outputs on 3 other images (a padded chunk)."""
    task, size = _task(name)
    example = _images(2, size, 0).contiguous(memory_format=torch.channels_last)
    forward = build_forward(task, backend, example, [_images(2, size, seed) for seed in (1, 2, 3)])
    images = _images(3, size, 4)
    with torch.inference_mode():
        assert _relative_difference(forward(images), task(images)) <= tolerance


# --- batch-norm folding ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(TASKS))
def test_folding_removes_every_batch_norm_after_a_convolution_and_keeps_the_outputs(name):
    task, size = _task(name)
    folded = fold_batch_norms(task, _images(2, size, 0))
    assert count_batch_norms(task) > 0 and count_batch_norms(folded) == 0
    images = _images(3, size, 1)
    with torch.no_grad():
        assert _relative_difference(folded(images), task(images)) <= TOLERANCE
    assert count_batch_norms(task) > 0  # the task itself is untouched


def test_folding_leaves_a_batch_norm_that_does_not_follow_a_convolution():
    model = create_model("resnet18", num_classes=5, width_mult=0.25, preact=True).eval()
    folded = fold_batch_norms(model, _images(2, 32, 0))
    # Pre-activation blocks normalise before convolving: only the stem's conv → bn pair folds.
    assert 0 < count_batch_norms(folded) < count_batch_norms(model)
    images = _images(2, 32, 1)
    with torch.no_grad():
        assert _relative_difference(folded(images), model(images)) <= TOLERANCE


class ConvOutputReused(nn.Module):
    """bn(conv(x)) + conv(x): the convolution's output is read by something else than its batch norm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)
        self.bn.running_mean.fill_(0.5)  # statistics that make the folded convolution differ from the plain one

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


def test_folding_that_would_change_the_outputs_is_a_one_line_error():
    with pytest.raises(ConfigError, match=r"backend=fused: folding .* changes its outputs .* use backend=compile"):
        fold_batch_norms(ConvOutputReused().eval(), _images(2, 8, 0))


# --- compiled, ONNX and int8 graphs ------------------------------------------------------------------------------


def test_the_classifier_quantised_to_int8_gives_the_eager_logits_within_its_rounding():
    _check_backend("classifier", "int8", INT8_TOLERANCE)  # built by PT2E, then compiled as backend=compile is


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TASKS))
@pytest.mark.parametrize(
    ("backend", "tolerance"), [("compile", TOLERANCE), ("onnxruntime", TOLERANCE), ("int8", INT8_TOLERANCE)]
)
def test_every_task_on_each_backend_gives_the_eager_outputs(name, backend, tolerance):
    # yolo_v1 reads backbone stage −2: int8 must drop the unused last stage before the quantiser annotates.
    _check_backend(name, backend, tolerance)


def test_a_graph_built_for_one_batch_size_takes_short_and_long_batches():
    calls = []

    def run(images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        calls.append(len(images))
        return images.sum((1, 2, 3)), [images[:, :1] * 2]

    fixed = FixedBatch(run, 4)
    images = _images(10, 5, 0)
    sums, (doubled,) = fixed(images)
    assert calls == [4, 4, 4]  # the last two images padded to a full batch
    torch.testing.assert_close(sums, images.sum((1, 2, 3)))
    torch.testing.assert_close(doubled, images[:, :1] * 2)
    assert fixed(images[:4])[0].shape == (4,) and calls[-1] == 4


def test_auto_folds_for_a_short_job_and_eager_reads_no_batch():
    task, size = _task("classifier")
    read = []

    def batches():
        for seed in range(3):
            read.append(seed)
            yield _images(2, size, seed)

    forward, chosen = build_from_batches(task, "auto", batches(), count=3)
    assert chosen == "fused" and count_batch_norms(forward) == 0 and read == [0]
    read.clear()
    assert build_from_batches(task, "eager", batches(), count=3) == (task, "eager") and read == []


def test_bad_backends_are_one_line_errors(monkeypatch):
    task, size = _task("classifier")
    with pytest.raises(ConfigError, match="unknown backend 'int4'"):
        build_forward(task, "int4", _images(2, size, 0))
    with pytest.raises(ConfigError, match="no images to build it on"):
        build_from_batches(task, "compile", iter([]), count=0)

    def failing_compile(forward, **options):
        def compiled(images):
            raise RuntimeError("BackendCompilerFailed: inductor raised\n(a page of explanation)")

        return compiled

    with monkeypatch.context() as patched:
        patched.setattr(torch, "compile", failing_compile)
        with pytest.raises(ConfigError, match=r"^torch.compile cannot compile this model \(BackendCompilerFailed: "):
            build_forward(task, "compile", _images(2, size, 0))
    real_import = builtins.__import__

    def without_torchao(name, *args, **kwargs):
        if name.startswith("torchao"):
            raise ImportError(name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_torchao)
    with pytest.raises(ConfigError, match=r"backend=int8 needs torchao .*pip install 'vision_research\[export\]'"):
        build_forward(task, "int8", _images(2, size, 0), [_images(2, size, 1)])


# --- vr benchmark --backend ------------------------------------------------------------------------------------


def test_the_matmul_peak_is_the_best_rate_of_its_largest_product():
    peak = matmul_peak_gflops(torch.float32)
    assert peak >= 2 * 256**3 / _best_seconds(256, torch.float32, "cpu", 3) / 1e9 * 0.5  # no slower than a small one


def test_benchmark_backends_reports_rates_ratios_and_differences():
    # fp32 on every machine: TOLERANCE is fp32's (precision=auto is bf16 autocast on CPUs with native bf16).
    settings = BenchmarkSettings(image_size=32, num_classes=10, warmup=1, steps=2, rounds=2, precision="32-true")
    report = benchmark_backends("resnet18", ["fused"], [1, 3], settings)
    assert [(row.backend, row.batch_size) for row in report.rows] == [
        (backend, batch) for batch in (1, 3) for backend in ("eager", "fused")
    ]
    eager = {row.batch_size: row.img_per_s for row in report.rows if row.backend == "eager"}
    for row in report.rows:
        assert row.speedup == pytest.approx(row.img_per_s / eager[row.batch_size])
        assert row.gflops_per_s == pytest.approx(row.img_per_s * report.gflops)
        assert row.p50_ms <= row.p90_ms and row.max_abs_diff <= TOLERANCE
    assert set(report.peaks) == {"fp32", "bf16"} and min(report.peaks.values()) > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["resnet*", "--backend", "fused"], "--backend measures one model"),
        (["resnet18", "--backend", "fused", "--compare", "torchvision"], "drop --compare"),
        (["resnet18", "--backend", "fused", "--batch-sizes", "0"], "--batch-sizes must be positive"),
    ],
)
def test_benchmark_backend_mistakes_are_one_line_errors(args, message, capsys):
    assert main(["benchmark", *args]) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
