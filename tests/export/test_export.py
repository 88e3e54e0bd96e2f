"""`vr export`: four tasks (ResNet-18 classifier, FCN-8s, YOLO v1 grid, YOLO anchors) in the three formats, each file
run by its own runtime here and compared with the eager task; the FCN at another input size, the YOLO detections
after the documented post-processing, the sidecar, and one-line errors.

The tasks are built directly (a quarter-width ResNet-18; the heads on its one-unit-per-stage version; 32-64 px) and
saved as run folders as ``vr predict`` reads them. Each (task, format) is exported once per module; ONNX files have a
free batch, the others a batch of one. Most of the time goes to torch.onnx's dynamo exporter (5-13 s per model).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from vision_research.cli import main
from vision_research.export import FORMATS, export, postprocess
from vision_research.export.graph import as_list
from vision_research.run_dir import load_task
from vision_research.tasks import ImageClassifier, SemanticSegmenter, YoloDetector

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"model": "resnet18", "model_options": {"width_mult": 0.25}}
# The heads on a ResNet-18 of one unit per stage: the exporters' time grows with the number of operations.
SHALLOW = {"model": "resnet18", "model_options": {"width_mult": 0.25, "depth_mult": 0.5}}
ANCHORS = [[[10, 13], [16, 30]], [[59, 119], [373, 326]]]  # 373 is not a bf16 number
TASKS = {  # name: (task name, input size, builder)
    "classifier": ("classification", 32, lambda: ImageClassifier(**SMALL, num_classes=5, in_chans=3)),
    "fcn8s": ("segmentation", 64, lambda: SemanticSegmenter(**SHALLOW, num_classes=4, head={"variant": "8s"})),
    "yolo_v1": (
        "detection",
        64,
        lambda: YoloDetector(
            **SHALLOW,
            num_classes=3,
            image_size=64,
            head={"type": "v1", "stage": -2, "grid_size": 4, "hidden_channels": 32},
        ),
    ),
    "yolo_anchors": (
        "detection",
        64,
        lambda: YoloDetector(
            **SHALLOW, num_classes=3, image_size=64, head={"type": "anchors", "strides": [16, 32], "anchors": ANCHORS}
        ),
    ),
}


def write_run(root: Path, name: str) -> Path:
    """A run folder with ``config.yaml`` and ``checkpoints/last.ckpt`` of the task ``name``, as training leaves it."""
    task_name, size, build = TASKS[name]
    L.seed_everything(0, verbose=False)
    task = build()
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.strategy.connect(task)
    checkpoint = root / name / "checkpoints" / "last.ckpt"
    trainer.save_checkpoint(checkpoint)
    (root / name / "config.yaml").write_text(
        OmegaConf.to_yaml({"task": {"name": task_name}, "data": {"image_size": size}})
    )
    return checkpoint


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export")
    return {name: write_run(root, name) for name in TASKS}


@pytest.fixture(scope="module")
def exported(checkpoints):
    """``exported(name, format)``: the export of a task's checkpoint, made once per module."""
    done = {}

    def get(name: str, format: str):
        if (name, format) not in done:
            done[name, format] = export(checkpoints[name], format, dynamic_batch=format == "onnx")
        return done[name, format]

    return get


@functools.cache
def runtime(path: Path, format: str) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    """The exported file loaded by the format's own runtime (once per file), as a function of the input batch."""
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda images: [torch.from_numpy(o) for o in session.run(None, {"images": images.numpy()})]
    module = torch.jit.load(str(path)) if format == "torchscript" else torch.export.load(str(path)).module()
    return lambda images: as_list(module(images))


def run_file(path: Path, format: str, images: torch.Tensor) -> list[torch.Tensor]:
    """``images`` through the exported file."""
    return runtime(path, format)(images)


@pytest.fixture(scope="module")
def tasks(checkpoints):
    """The eager reference: each checkpoint's task as ``vr predict`` loads it, in eval mode."""
    return {name: load_task(checkpoint)[1].eval() for name, checkpoint in checkpoints.items()}


@torch.no_grad()
def eager(task: L.LightningModule, images: torch.Tensor) -> list[torch.Tensor]:
    return as_list(task(images))


def images_for(name: str, count: int, size: tuple[int, int] | None = None) -> torch.Tensor:
    side = TASKS[name][1]
    return torch.randn(count, 3, *(size or (side, side)), generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize("format", list(FORMATS))
@pytest.mark.parametrize("name", list(TASKS))
def test_every_format_gives_the_eager_outputs(name, format, checkpoints, exported, tasks):
    report = exported(name, format)
    assert report.path == checkpoints[name].with_name("last" + FORMATS[format].suffix) and report.path.is_file()
    assert report.max_abs_diff <= 1e-4 and report.metadata["verification"]["passed"]
    # Images other than the built-in check's; ONNX files take a batch of any size, the others one image.
    images = images_for(name, 3 if format == "onnx" else 1)
    found, expected = run_file(report.path, format, images), eager(tasks[name], images)
    assert [o.shape for o in found] == [o.shape for o in expected]
    assert max((f - e).abs().max().item() for f, e in zip(found, expected, strict=True)) <= 1e-4


@pytest.mark.parametrize("format", ["onnx", "exported_program"])
def test_fcn_takes_any_input_size(format, exported, tasks):
    report = exported("fcn8s", format)
    images = images_for("fcn8s", 2 if format == "onnx" else 1, size=(96, 80))  # ONNX: a free batch too
    (scores,), (expected,) = run_file(report.path, format, images), eager(tasks["fcn8s"], images)
    assert scores.shape == (len(images), 4, 96, 80)
    assert (scores - expected).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name", ["yolo_v1", "yolo_anchors"])
def test_yolo_detections_after_postprocessing_equal_the_eager_task(name, exported, tasks):
    report, task = exported(name, "onnx"), tasks[name]
    images = images_for(name, 2)
    found = postprocess(run_file(report.path, "onnx", images), report.sidecar)  # as the README shows
    with torch.no_grad():
        expected = task.detect(task(images))
    assert len(found) == len(expected) == 2
    for got, want in zip(found, expected, strict=True):
        assert len(want["boxes"]) > 0
        assert torch.equal(got["labels"], want["labels"])
        torch.testing.assert_close(got["boxes"], want["boxes"], atol=1e-3, rtol=0)
        torch.testing.assert_close(got["scores"], want["scores"], atol=1e-5, rtol=0)


def test_sidecar_describes_input_normalisation_classes_outputs_and_check(exported, tasks):
    sidecar = json.loads(exported("classifier", "onnx").sidecar.read_text())
    mean, std = tasks["classifier"].input_stats
    assert sidecar["format"] == "onnx" and sidecar["file"] == "last.onnx" and sidecar["dtype"] == "fp32"
    assert sidecar["opset"] >= 18 and sidecar["exporter"] == "torch.onnx.export (dynamo)"
    assert sidecar["task"] == "classification" and sidecar["model"] == "resnet18"
    assert sidecar["model_options"] == {"width_mult": 0.25}
    assert sidecar["input_name"] == "images" and sidecar["input_shape"] == ["batch", 3, 32, 32]
    assert sidecar["input_size"] == [32, 32] and sidecar["channels"] == 3 and sidecar["layout"] == "NCHW"
    assert sidecar["mean"] == pytest.approx(mean) and sidecar["std"] == pytest.approx(std)
    assert sidecar["preprocessing"] == "resize_crop" and sidecar["class_names"] == ["0", "1", "2", "3", "4"]
    assert sidecar["outputs"] == [{"name": "logits", "shape": ["batch", 5]}]
    check = sidecar["verification"]
    assert check["images"] == 2 and check["passed"] and check["tolerance"] == 1e-4 and check["runtime"] == "onnxruntime"
    assert check["max_abs_diff"] == exported("classifier", "onnx").max_abs_diff

    fcn = json.loads(exported("fcn8s", "exported_program").sidecar.read_text())
    assert fcn["input_shape"] == [1, 3, "height", "width"] and fcn["preprocessing"] == "letterbox"
    assert fcn["outputs"] == [{"name": "scores", "shape": [1, 4, "height", "width"]}] and fcn["opset"] is None

    yolo = json.loads(exported("yolo_anchors", "torchscript").sidecar.read_text())
    assert yolo["category_ids"] == [1, 2, 3] and yolo["preprocessing"] == "letterbox"
    assert yolo["outputs"] == [
        {"name": "raw_stride16", "shape": [1, 2, 4, 4, 8]},
        {"name": "raw_stride32", "shape": [1, 2, 2, 2, 8]},
    ]
    assert yolo["postprocess"]["anchors"] == ANCHORS and yolo["postprocess"]["strides"] == [16, 32]
    assert yolo["postprocess"]["image_size"] == 64 and yolo["postprocess"]["iou_threshold"] == 0.5


@pytest.mark.parametrize(("name", "dtype"), [("classifier", "fp16"), ("yolo_anchors", "bf16")])
def test_half_precision_exports_pass_their_looser_tolerance(name, dtype, checkpoints):
    report = export(checkpoints[name], "torchscript", dtype=dtype)
    assert report.path.name == f"last-{dtype}.pt" and report.tolerance == {"bf16": 5e-2, "fp16": 1e-2}[dtype]
    assert report.metadata["dtype"] == dtype and report.metadata["verification"]["passed"]
    if name == "yolo_anchors":  # the decoding's anchors are the checkpoint's, not their bf16 roundings
        assert json.loads(report.sidecar.read_text())["postprocess"]["anchors"] == ANCHORS


def test_cli_prints_the_file_the_sidecar_and_the_difference(checkpoints, tmp_path, capsys):
    output = tmp_path / "out" / "model.pt2"
    assert main(["export", f"ckpt_path={checkpoints['yolo_v1']}", "format=exported_program", f"output={output}"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"export: {output} (exported_program, fp32)"
    assert out[1] == f"sidecar: {output}.json"
    assert out[2].startswith("max abs difference to the eager model: ") and "torch.export.load" in out[2]
    assert json.loads(Path(f"{output}.json").read_text())["file"] == "model.pt2"


def _error(capsys, *args: str) -> str:
    """The one stderr line of a ``vr export`` that fails with exit code 2."""
    assert main(["export", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_bad_input_is_one_line_error(checkpoints, tmp_path, capsys):
    ckpt = f"ckpt_path={checkpoints['classifier']}"
    assert "Did you mean: onnx?" in _error(capsys, ckpt, "format=onx")
    assert "format missing" in _error(capsys, ckpt)
    assert "dtype=fp8: choose fp32, bf16, fp16" in _error(capsys, ckpt, "format=onnx", "dtype=fp8")
    assert "opset is an ONNX setting" in _error(capsys, ckpt, "format=torchscript", "opset=17")
    assert "writes .pt2 files" in _error(capsys, ckpt, "format=exported_program", f"output={tmp_path / 'a.onnx'}")
    assert "dynamic_batch must be true or false" in _error(capsys, ckpt, "format=onnx", "dynamic_batch=yes")
    # Not a checkpoint, and a run whose task is unknown: load_task's errors.
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_text("not a checkpoint")
    (run / "config.yaml").write_text(OmegaConf.to_yaml({"task": {"name": "classification"}, "data": {}}))
    assert "not a checkpoint of a classification task" in _error(
        capsys, f"ckpt_path={run}/checkpoints/last.ckpt", "format=onnx"
    )
    (run / "config.yaml").write_text(OmegaConf.to_yaml({"task": {"name": "clasification"}, "data": {}}))
    assert "unknown task 'clasification'. Did you mean: classification" in _error(
        capsys, f"ckpt_path={run}/checkpoints/last.ckpt", "format=onnx"
    )


def test_onnx_without_its_packages_names_the_extra(checkpoints, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    err = _error(capsys, f"ckpt_path={checkpoints['classifier']}", "format=onnx")
    assert "onnxruntime is missing" in err and "pip install 'vision_research[export]'" in err


def test_a_difference_above_the_tolerance_is_an_error_and_the_sidecar_says_so(
    checkpoints, tmp_path, monkeypatch, capsys
):
    spec = FORMATS["torchscript"]
    shifted = dataclasses.replace(spec, load=lambda path: lambda x: [o + 1e-3 for o in spec.load(path)(x)])
    monkeypatch.setitem(FORMATS, "torchscript", shifted)  # an export that is off by 1e-3
    output = tmp_path / "off.pt"
    err = _error(capsys, f"ckpt_path={checkpoints['classifier']}", "format=torchscript", f"output={output}")
    assert "differs from the eager model by 0.001" in err and "above tolerance 0.0001" in err
    assert output.is_file() and json.loads((tmp_path / "off.pt.json").read_text())["verification"]["passed"] is False


def test_onnx_opset_too_old_and_unsupported_operator(checkpoints, tmp_path, monkeypatch, capsys):
    # Small graphs instead of the ResNet, so that the exporter's failures come fast.
    args = [f"ckpt_path={checkpoints['classifier']}", "format=onnx", f"output={tmp_path / 'a.onnx'}"]
    monkeypatch.setattr(ImageClassifier, "forward", lambda self, x: x.mean(dim=(2, 3)))  # ReduceMean: axes input
    err = _error(capsys, *args, "opset=11")
    assert "cannot write this model in opset 11" in err and "use opset=18 or newer" in err
    monkeypatch.setattr(ImageClassifier, "forward", lambda self, x: torch.kthvalue(x.flatten(1), 2).values[:, None])
    err = _error(capsys, *args)
    assert "cannot translate aten.kthvalue to ONNX" in err and "format=exported_program" in err
    assert not (tmp_path / "a.onnx").exists()
