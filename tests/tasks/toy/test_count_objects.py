"""A task added from outside the package (count_objects.py beside this file, and its config) is trained, evaluated,
predicted and exported through `vr` like a built-in one: adding a task edits nothing in vision_research/. Its recipe
is an experiment in the same config folder (configs/experiment/count_shapes.yaml)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from tests.commands import FAST, SMALL_SHAPES, vr
from vision_research.cli import main
from vision_research.export import postprocess

REPOSITORY = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
TRAIN = [
    "--config-dir",
    str(HERE / "configs"),
    "experiment=count_shapes",
    *SMALL_SHAPES,
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The run folder of a short `vr train task=count_objects`."""
    root = tmp_path_factory.mktemp("count")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("VR_DATA_DIR", str(root / "data"))
        env.setenv("OMP_NUM_THREADS", "1")
        result = vr("train", *TRAIN, *FAST, f"hydra.run.dir={root / 'run'}", cwd=REPOSITORY)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "run"


def test_it_trains_and_tests_with_its_own_metric(run):
    summary = json.loads((run / "metrics.json").read_text())
    assert {"test/mae", "test/loss", "best/val/mae"} <= set(summary["metrics"])
    assert summary["tested_checkpoint"] == "checkpoints/last.ckpt"


def test_vr_eval_reproduces_the_test_figures(run, monkeypatch, capsys):
    monkeypatch.chdir(REPOSITORY)
    assert main(["eval", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"]) == 0
    evaluated = json.loads((run / "eval" / "test-shapes" / "metrics.json").read_text())["metrics"]
    trained = json.loads((run / "metrics.json").read_text())["metrics"]
    assert evaluated == pytest.approx({k: v for k, v in trained.items() if k.startswith("test/")}, abs=1e-6)
    assert "test/mae " in capsys.readouterr().out


def test_vr_predict_writes_its_column(run, tmp_path, monkeypatch):
    monkeypatch.chdir(REPOSITORY)
    images = sorted((run.parent / "data").rglob("images/test/*.png"))[:3]  # the shapes data the run read
    assert len(images) == 3
    folder = tmp_path / "photos"
    folder.mkdir()
    for image in images:
        (folder / image.name).write_bytes(image.read_bytes())
    assert main(["predict", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", f"input={folder}"]) == 0
    rows = list(csv.reader((run / "predictions" / "predictions.csv").open()))
    assert rows[0] == ["file", "count"] and sorted(row[0] for row in rows[1:]) == sorted(i.name for i in images)
    assert all(np.isfinite(float(row[1])) for row in rows[1:])


def test_vr_export_names_its_output_and_postprocess_passes_it_through(run, monkeypatch):
    monkeypatch.chdir(REPOSITORY)
    output = run / "exported" / "count.onnx"
    args = [f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "format=onnx", "dynamic_batch=true", f"output={output}"]
    assert main(["export", *args]) == 0
    sidecar = json.loads(Path(f"{output}.json").read_text())
    assert sidecar["task"] == "count_objects" and sidecar["verification"]["passed"]
    assert [o["name"] for o in sidecar["outputs"]] == ["count"] and sidecar["outputs"][0]["shape"] == ["batch"]
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(0).standard_normal((2, 3, *sidecar["input_size"])).astype(np.float32)
    (counts,) = postprocess(session.run(None, {sidecar["input_name"]: images}), sidecar)
    assert isinstance(counts, torch.Tensor) and counts.shape == (2,)
