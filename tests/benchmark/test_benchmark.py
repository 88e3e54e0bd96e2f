"""vr benchmark: the figures it reports are the ones defined (never their speed), and mistakes are one clean line."""

import csv
import statistics
from dataclasses import replace

import pytest
import torch
import torchvision

from vision_research.analysis import model_summary
from vision_research.benchmark import (
    OURS,
    BenchmarkResult,
    BenchmarkSettings,
    benchmark_models,
    build_subject,
    inference_step,
    parameter_notes,
    reference_model,
    step_peak_bytes,
    synthetic_batch,
    train_step,
)
from vision_research.cli import main
from vision_research.errors import ConfigError
from vision_research.models import count_parameters, create_model
from vision_research.speed import resolve_precision

# One thread: the tests share the machine, and two OpenMP threads on a busy CPU wait for each other.
TINY = BenchmarkSettings(
    batch_size=2, image_size=32, num_classes=10, warmup=1, steps=1, rounds=2, device="cpu", threads=1
)
TINY_CLI = ["--image-size=32", "--batch-size=2", "--warmup=0", "--steps=1", "--rounds=1", "--threads=1"]


@pytest.fixture(scope="module")
def compared():
    """resnet18 at 32 px against torchvision's, both modes, two alternating rounds."""
    return benchmark_models(["resnet18"], TINY, compare="torchvision")


def test_results_hold_the_defined_figures(compared):
    ours, reference = compared
    assert (ours.model, ours.implementation, reference.implementation) == ("resnet18", OURS, "torchvision")
    assert ours.input_size == reference.input_size == (3, 32, 32)
    for result in compared:
        for measurement in (result.inference, result.train):
            assert measurement.img_per_s > 0
            assert len(measurement.round_img_per_s) == TINY.rounds
            assert measurement.img_per_s == pytest.approx(statistics.median(measurement.round_img_per_s))
            assert 0 < measurement.p50_ms <= measurement.p90_ms <= measurement.p99_ms
            assert measurement.peak_mem_mb > 0
        # Training holds the weights, the momentum buffers and the gradients at once.
        assert result.train.peak_mem_mb * 1e6 > 3 * 4 * result.params
        assert result.inference.peak_mem_mb * 1e6 > 4 * result.params


def test_parameters_and_flops_are_those_of_the_models(compared):
    ours, reference = compared
    model = create_model("resnet18", num_classes=10)
    assert ours.params == count_parameters(model)
    assert ours.gflops == model_summary(model, (3, 32, 32)).total_flops / 1e9
    torchvision_model = torchvision.models.resnet18(num_classes=10)
    assert reference.params == count_parameters(torchvision_model)
    assert reference.gflops == model_summary(torchvision_model, (3, 32, 32)).total_flops / 1e9


def test_ratios_are_ours_over_the_reference(compared):
    ours, reference = compared
    assert ours.reference == "torchvision"
    assert ours.infer_ratio == pytest.approx(ours.inference.img_per_s / reference.inference.img_per_s)
    assert ours.train_ratio == pytest.approx(ours.train.img_per_s / reference.train.img_per_s)
    assert reference.infer_ratio is None and reference.train_ratio is None


def test_reference_models_are_the_libraries_own():
    import timm

    assert count_parameters(reference_model("resnet18", "torchvision", 10)) == count_parameters(
        torchvision.models.resnet18(num_classes=10)
    )
    assert count_parameters(reference_model("timm:resnet18", "timm", 10)) == count_parameters(
        timm.create_model("resnet18", num_classes=10)
    )
    # timm files the paper's Xception under another name: the comparison finds it.
    assert count_parameters(reference_model("xception", "timm", 10)) == count_parameters(
        create_model("xception", num_classes=10)
    )
    with pytest.raises(ConfigError, match="timm has no model named 'lenet5'"):
        reference_model("lenet5", "timm")


def test_a_parameter_mismatch_gets_a_note():
    settings = TINY.resolved()
    ours = BenchmarkResult("net", OURS, settings, (3, 32, 32), 1_000, 1.0, reference="timm")
    same, other = (BenchmarkResult("net", "timm", settings, (3, 32, 32), n, 1.0) for n in (1_000, 1_200))
    assert parameter_notes([ours, same]) == []
    (note,) = parameter_notes([ours, other])
    assert "1,000" in note and "1,200" in note and "timm" in note


def test_cpu_peak_memory_follows_the_allocations():
    def run() -> torch.Tensor:
        a = torch.empty(250_000)  # 1 MB
        b = a + 1  # another 1 MB while a is alive
        return b.sum()

    assert 2_000_000 <= step_peak_bytes(run, "cpu") <= 2_000_064


def test_peak_memory_grows_with_the_batch():
    settings = replace(TINY, num_classes=1000, warmup=0, rounds=1, precision="32")
    small, large = (benchmark_models(["resnet20"], replace(settings, batch_size=b))[0] for b in (1, 8))
    assert large.train.peak_mem_mb > small.train.peak_mem_mb
    assert large.inference.peak_mem_mb > small.inference.peak_mem_mb


@pytest.mark.parametrize(
    ("precision", "dtype"), [("bf16-mixed", torch.bfloat16), ("16-mixed", torch.float16), ("32-true", torch.float32)]
)
def test_mixed_precision_autocasts_the_measured_steps(precision, dtype):
    settings = replace(TINY, precision=precision).resolved()
    subject = build_subject("resnet20", OURS, settings)
    images, targets = synthetic_batch(2, subject.input_size, 10, "cpu")
    assert inference_step(subject.model, images, settings).run().dtype == dtype
    step = train_step(subject.model, images, targets, settings)
    assert step.run().dtype == dtype
    assert all(p.dtype == torch.float32 for p in subject.model.parameters())  # the weights stay fp32
    assert all(p.grad is None for p in subject.model.parameters())  # set to None after the step


@pytest.mark.parametrize("channels_last", [True, False])
def test_channels_last_converts_weights_and_batch(channels_last):
    settings = replace(TINY, channels_last=channels_last).resolved()
    model = build_subject("resnet20", OURS, settings).model
    kernels = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert kernels and all(
        w.is_contiguous(memory_format=torch.channels_last) == channels_last and w.is_contiguous() != channels_last
        for w in kernels
    )
    images, _ = synthetic_batch(2, (3, 32, 32), 10, "cpu", channels_last=channels_last)
    assert images.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_compile_wraps_in_place_and_keeps_the_state_dict_keys():
    plain = build_subject("resnet20", OURS, TINY.resolved()).model
    compiled = build_subject("resnet20", OURS, replace(TINY, compile=True).resolved())
    assert compiled.model._compiled_call_impl is not None
    assert list(compiled.model.state_dict()) == list(plain.state_dict())


@pytest.mark.slow
def test_a_compiled_model_runs():
    settings = replace(TINY, compile=True, mode="inference", rounds=1)
    (result,) = benchmark_models(["resnet20"], settings)
    assert result.inference.img_per_s > 0 and result.train is None


def test_settings_resolve_aliases_and_auto():
    assert BenchmarkSettings(precision="bf16", device="cpu").resolved().precision == "bf16-mixed"
    assert BenchmarkSettings(precision="32", device="cpu").resolved().precision == "32-true"
    assert BenchmarkSettings(device="cpu").resolved().precision == resolve_precision("auto", "cpu")
    assert BenchmarkSettings(threads=1, device="cpu").resolved().threads == 1
    with pytest.raises(ConfigError, match="mode"):
        BenchmarkSettings(mode="eval", device="cpu").resolved()


def test_a_step_that_cannot_run_is_a_config_error():
    # Batch norm in train mode needs more than one value per channel: resnet18 at 32 px ends on 1×1 maps.
    settings = replace(TINY, batch_size=1, warmup=0, rounds=1, mode="train")
    with pytest.raises(ConfigError, match="train step of resnet18 failed at batch size 1"):
        benchmark_models(["resnet18"], settings)


def test_cli_prints_the_table_and_writes_csv_and_markdown(tmp_path, capsys):
    csv_path, md_path = tmp_path / "bench.csv", tmp_path / "bench.md"
    code = main(
        ["benchmark", "resnet18", "--compare", "torchvision", "--mode", "inference", "--precision", "32", *TINY_CLI]
        + ["--device", "cpu", "--csv", str(csv_path), "--markdown", str(md_path)]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "torch " + torch.__version__ in out and "precision 32-true" in out and "batch 2" in out
    assert "threads 1" in out
    assert "vision_research" in out and "torchvision" in out and "ratio ours / torchvision" in out
    rows = list(csv.DictReader(csv_path.open()))
    assert [(r["model"], r["implementation"]) for r in rows] == [("resnet18", OURS), ("resnet18", "torchvision")]
    assert float(rows[0]["infer_img_s"]) > 0 and rows[0]["train_img_s"] == "" and rows[0]["reference"] == "torchvision"
    assert float(rows[0]["infer_ratio"]) == pytest.approx(
        float(rows[0]["infer_img_s"]) / float(rows[1]["infer_img_s"]), rel=1e-2
    )
    lines = md_path.read_text().splitlines()
    assert lines[0].startswith("torch ") and "channels-last on" in lines[0]
    table = [line for line in lines if line.startswith("|")]
    assert table[0].startswith("| model | implementation |") and "infer img/s" in table[0]
    assert len(table) == 2 + 3  # header, alignment, ours, torchvision, the ratio row


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["resnet19"], ["'resnet19'", "resnet18"]),
        (["--compare", "torchvision", "lenet5"], ["torchvision has no model named 'lenet5'"]),
        (["resnet18", "--batch-size", "0"], ["batch_size", "got 0"]),
        (["vgg9*"], ["no model matches 'vgg9*'"]),
        (["resnet18", "--precision", "fp8"], ["precision 'fp8'", "bf16-mixed"]),
        (["resnet18", "--compare", "onnx"], ["--compare", "torchvision"]),
        (["resnet18", "--steps", "many"], ["--steps", "invalid int"]),
    ],
)
def test_cli_mistakes_are_one_line(args, expected, capsys):
    assert main(["benchmark", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    for text in expected:
        assert text in err
