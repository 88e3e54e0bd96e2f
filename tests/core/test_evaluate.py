"""`vr eval`: checkpoints of every task re-scored on their run's splits (training's figures reproduced), on another
data set, an evaluation under no_grad after one in inference mode (the inference-tensor bug), and one-line errors.

Runs are trained through the CLI once per module, in two processes side by side (one torch thread each): a digits
classifier, and one sweep over the shapes experiments (segmentation, detection, localization), so that Python and
Lightning start once for the three. The evaluations call the CLI's entry point in this process.
"""

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import lightning as L
import pytest
import yaml

from tests.commands import FAST, SMALL_SHAPES, vr
from vision_research.build import build_datamodule
from vision_research.cli import main
from vision_research.run_dir import load_task

DIGITS = ["data=digits", "logger.tensorboard=false"]
SHAPES = [
    "-m",
    "experiment=fcn_shapes,yolo_shapes,localize_shapes",
    # Job folders by number: named by all these overrides, they would pass the file-name length limit.
    "hydra.sweep.subdir=${hydra.job.num}",
    # The model and data the three experiments choose: a sweep's first composition is the default experiment's.
    "model=resnet18",
    "data=shapes",
    *SMALL_SHAPES,
    "data.eval_batch_size=4",
    "model.width_mult=0.25",
    "trainer.limit_train_batches=2",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{task name: run directory} of four tiny runs; the shapes data goes to the module's own folder."""
    root = tmp_path_factory.mktemp("eval")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("VR_DATA_DIR", str(root / "data"))  # the shapes runs keep root: null (one cache per variant)
        env.setenv("OMP_NUM_THREADS", "1")  # for the two training processes; this one's torch has its threads
        with ThreadPoolExecutor(2) as pool:
            for result in pool.map(lambda args: vr("train", *args, *FAST, cwd=root), [DIGITS, SHAPES]):
                assert result.returncode == 0, result.stderr[-3000:]
        found = {}
        for metrics in (root / "runs").rglob("metrics.json"):
            found[yaml.safe_load((metrics.parent / "config.yaml").read_text())["task"]["name"]] = metrics.parent
        assert set(found) == {"classification", "segmentation", "detection", "localization"}
        yield found


def _summary(run_dir: Path) -> dict:
    """A run's metrics.json, its tested checkpoint (named relative to the run) as a path."""
    summary = json.loads((run_dir / "metrics.json").read_text())
    return {**summary, "tested_checkpoint": str(run_dir / summary["tested_checkpoint"])}


def vr_eval(capsys, *args: str) -> tuple[int, str, str]:
    """``vr eval ARGS`` through the CLI's entry point: exit code, stdout, stderr."""
    code = main(["eval", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _evaluated(capsys, *args: str) -> tuple[dict, Path]:
    """metrics.json and the output folder of a successful ``vr eval ARGS``, checked against the console summary."""
    summary, output, _ = _evaluated_with_console(capsys, *args)
    return summary, output


def _evaluated_with_console(capsys, *args: str) -> tuple[dict, Path, str]:
    """:func:`_evaluated` and what the command printed."""
    code, out, err = vr_eval(capsys, *args)
    assert code == 0, err[-3000:]
    line = next(line for line in out.splitlines() if line.startswith("eval: "))
    output = Path(line.removeprefix("eval: ").rsplit(" (", 1)[0])
    summary = json.loads((output / "metrics.json").read_text())
    eager_keys = {
        "metrics",
        "checkpoint",
        "split",
        "images",
        "parameters",
        "precision",
        "backend",
        "scoring_seconds",
        "seconds",
    }
    backend_keys = {"eager_metrics", "eager_scoring_seconds", "change"} if summary["backend"] != "eager" else set()
    assert set(summary) == eager_keys | backend_keys
    assert all(f"{key} " in out for key in summary["metrics"] if "/iou_" not in key)
    return summary, output, out


def _assert_reproduced(evaluated: dict, trained: dict, split: str) -> None:
    """Every ``split/`` figure of training's metrics.json, to 1e-6."""
    expected = {k: v for k, v in trained["metrics"].items() if k.startswith(f"{split}/")}
    assert expected and set(evaluated["metrics"]) == set(expected)
    assert evaluated["metrics"] == pytest.approx(expected, abs=1e-6)


def test_classification_reproduces_the_test_and_val_figures(runs, capsys):
    trained = _summary(runs["classification"])
    checkpoint = trained["tested_checkpoint"]
    summary, output = _evaluated(capsys, f"ckpt_path={checkpoint}")
    _assert_reproduced(summary, trained, "test")
    assert {"test/acc1", "test/loss"} <= set(summary["metrics"])
    assert output == runs["classification"] / "eval" / "test-digits"
    assert summary["checkpoint"] == str(Path(checkpoint).resolve()) and summary["split"] == "test"
    assert summary["parameters"] == trained["parameters"] and summary["precision"] == trained["precision"]
    config = yaml.safe_load((output / "config.yaml").read_text())
    assert config["eval"] == {"checkpoint": summary["checkpoint"], "split": "test", "backend": "eager"}
    assert config["data"] == yaml.safe_load((runs["classification"] / "config.yaml").read_text())["data"]

    # last.ckpt holds the weights of the last validation, so the val figures come back too.
    summary, output = _evaluated(capsys, f"ckpt_path={checkpoint}", "split=val")
    _assert_reproduced(summary, trained, "val")
    assert output.name == "val-digits"

    # data.KEY=VALUE overrides (parsed as YAML) name their own folder. The ~360 test digits in two batches of 180
    # instead of one of 500 (within the run's limit_test_batches=2) give the same figures.
    summary, output = _evaluated(capsys, f"ckpt_path={checkpoint}", "data.eval_batch_size=180")
    assert output.name == "test-digits-eval_batch_size=180"
    assert yaml.safe_load((output / "config.yaml").read_text())["data"]["eval_batch_size"] == 180
    assert summary["metrics"] == pytest.approx({k: v for k, v in trained["metrics"].items() if "test/" in k}, abs=1e-5)


def test_classification_on_another_data_set(runs, capsys):
    checkpoint = _summary(runs["classification"])["tested_checkpoint"]
    on_mnist, output = _evaluated(capsys, f"ckpt_path={checkpoint}", "data=mnist")
    assert output == runs["classification"] / "eval" / "test-mnist"
    assert set(on_mnist["metrics"]) == {"test/loss", "test/acc1", "test/acc5"}
    config = yaml.safe_load((output / "config.yaml").read_text())
    assert config["data"]["name"] == "mnist" and config["data"]["augment"]["degrees"] == 10  # configs/data/mnist.yaml
    assert config["model"] == yaml.safe_load((runs["classification"] / "config.yaml").read_text())["model"]


@pytest.mark.parametrize(("task", "metric"), [("segmentation", "test/miou"), ("detection", "test/map_50")])
def test_dense_tasks_reproduce_the_test_figures(runs, capsys, task, metric):
    trained = _summary(runs[task])
    summary, output = _evaluated(capsys, f"ckpt_path={trained['tested_checkpoint']}")
    assert metric in summary["metrics"]
    _assert_reproduced(summary, trained, "test")
    assert output == runs[task] / "eval" / "test-shapes"


def test_localization_evaluates_the_val_split(runs, capsys):
    trained = _summary(runs["localization"])
    summary, _ = _evaluated(capsys, f"ckpt_path={trained['tested_checkpoint']}", "split=val")
    assert {"val/acc1", "val/iou", "val/loc_acc"} <= set(summary["metrics"])
    _assert_reproduced(summary, trained, "val")


@pytest.mark.parametrize(
    ("task", "backend", "tolerance"),
    [("classification", "int8", 0.05), ("segmentation", "fused", 1e-5), ("detection", "fused", 1e-5)],
)
def test_a_backend_is_scored_beside_eager(runs, capsys, task, backend, tolerance):
    """The fast path scores what eager scores: batch norms folded to float rounding, int8 within its rounding (an
    undertrained digits model: a few of ~360 test images may change class)."""
    trained = _summary(runs[task])
    checkpoint = trained["tested_checkpoint"]
    summary, output, out = _evaluated_with_console(capsys, f"ckpt_path={checkpoint}", f"backend={backend}")
    assert summary["backend"] == backend and output.name.endswith(f"-{backend}")
    _assert_reproduced({"metrics": summary["eager_metrics"]}, trained, "test")
    assert summary["metrics"] == pytest.approx(summary["eager_metrics"], abs=tolerance)
    assert summary["change"] == pytest.approx(
        {k: v - summary["eager_metrics"][k] for k, v in summary["metrics"].items()}
    )
    assert all(f"{k} {v:+.4f}" in out for k, v in summary["change"].items() if "/iou_" not in k)


@pytest.mark.parametrize("task", ["localization", "segmentation"])
def test_an_evaluation_under_no_grad_after_one_in_inference_mode(runs, task):
    """trainer.validate / test (inference mode) left inference tensors in the metric states, which a later loop
    under no_grad (fit's validation, or inference_mode=False) failed to update in place: "Inplace update to
    inference tensor outside InferenceMode"."""
    cfg, module = load_task(_summary(runs[task])["tested_checkpoint"])
    data = build_datamodule(cfg)
    quiet = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    (first,) = L.Trainer(**quiet, limit_val_batches=1).validate(module, datamodule=data, verbose=False)
    no_grad = L.Trainer(**quiet, limit_val_batches=1, inference_mode=False)
    (again,) = no_grad.validate(module, datamodule=data, verbose=False)
    assert module.monitor in again and again == pytest.approx(first, abs=1e-6)


@pytest.fixture(scope="module")
def broken_runs(runs, tmp_path_factory):
    """Checkpoints in unusable places: no run directory, an unknown task in config.yaml, a text file."""
    root = tmp_path_factory.mktemp("broken")
    checkpoint = Path(_summary(runs["classification"])["tested_checkpoint"])
    lonely = root / "lonely" / "checkpoints" / "last.ckpt"
    lonely.parent.mkdir(parents=True)
    shutil.copy(checkpoint, lonely)
    config = yaml.safe_load((runs["classification"] / "config.yaml").read_text())
    (root / "renamed" / "checkpoints").mkdir(parents=True)
    (root / "renamed" / "config.yaml").write_text(yaml.safe_dump({**config, "task": {"name": "clasification"}}))
    shutil.copy(checkpoint, root / "renamed" / "checkpoints" / "last.ckpt")
    (root / "text" / "checkpoints").mkdir(parents=True)
    shutil.copy(runs["classification"] / "config.yaml", root / "text" / "config.yaml")
    (root / "text" / "checkpoints" / "last.ckpt").write_text("not a checkpoint\n")
    return root


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ckpt_path={root}/missing.ckpt"], "missing.ckpt: checkpoint not found"),
        (["ckpt_path={root}/lonely/checkpoints/last.ckpt"], "no config.yaml in its run directory"),
        (["ckpt_path={root}/renamed/checkpoints/last.ckpt"], "task.name: unknown task 'clasification'"),
        (["ckpt_path={root}/text/checkpoints/last.ckpt"], "not a checkpoint of a classification task"),
        (["ckpt_path={digits}", "split=train"], "split='train': choose test or val"),
        (["ckpt_path={digits}", "data=mnsit"], "unknown data 'mnsit' (configs/data/). Did you mean: mnist?"),
        (["ckpt_path={digits}", "data.eval_batch_sise=8"], "Did you mean: data.eval_batch_size"),
        (["ckpt_path={digits}", "data=coco"], "data.root is required for data=coco"),
        (
            ["ckpt_path={segmentation}", "data.task=detection"],
            "gives boxes (data.task=detection), but this segmentation checkpoint",
        ),
        (["split=val"], "ckpt_path missing"),
        (["ckpt_path={digits}", "trainer.max_epoch=1"], "Did you mean: trainer.max_epochs"),
        (["ckpt_path={digits}", "split=test,val"], "vr eval takes one value per key; split has several"),
        (["-m", "ckpt_path={digits}"], "vr eval takes KEY=VALUE overrides, not -m"),
        (["ckpt_path={digits}", "calibration_images=0"], "calibration_images must be a positive integer"),
        (["ckpt_path={digits}", "metric=voc07"], "metric=voc07: ImageClassifier scores with its own metrics only"),
        (["ckpt_path={detection}", "metric=voc99"], "metric=voc99: YoloDetector scores with its own metrics; choose"),
    ],
)
def test_mistakes_are_one_line_errors(runs, broken_runs, capsys, args, message):
    paths = {
        "root": broken_runs,
        "digits": _summary(runs["classification"])["tested_checkpoint"],
        "segmentation": _summary(runs["segmentation"])["tested_checkpoint"],
        "detection": _summary(runs["detection"])["tested_checkpoint"],
    }
    code, _, err = vr_eval(capsys, *(arg.format(**paths) for arg in args))
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err


def test_any_key_of_the_run_config_is_a_hydra_override(runs, capsys):
    """trainer.* reaches the evaluation's Trainer (the run's precision replaced), and names the output folder."""
    checkpoint = _summary(runs["classification"])["tested_checkpoint"]
    summary, output = _evaluated(capsys, f"ckpt_path={checkpoint}", "trainer.precision=bf16-mixed")
    assert summary["precision"] == "bf16-mixed" and output.name == "test-digits-trainer.precision=bf16-mixed"
    assert yaml.safe_load((output / "config.yaml").read_text())["trainer"]["precision"] == "bf16-mixed"
    assert {"test/acc1", "test/loss"} <= set(summary["metrics"])


def test_a_detector_is_scored_with_voc_ap_on_request(runs, capsys):
    checkpoint = _summary(runs["detection"])["tested_checkpoint"]
    summary, output = _evaluated(capsys, f"ckpt_path={checkpoint}", "metric=voc07")
    assert set(summary["metrics"]) == {"test/loss", "test/voc07_map"} and output.name == "test-shapes-voc07"
    assert 0 <= summary["metrics"]["test/voc07_map"] <= 1


def test_a_checkpoint_in_a_sweep_folder_needs_no_quoting(runs, tmp_path, capsys):
    """A sweep names its run folders key=value,key=value, which Hydra's grammar would read as more than a path."""
    run = tmp_path / "sweep" / "0_model=lenet5,seed=1"
    shutil.copytree(runs["classification"], run)
    summary, output = _evaluated(capsys, f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}")
    assert output == run / "eval" / "test-digits"
    _assert_reproduced(summary, _summary(runs["classification"]), "test")
