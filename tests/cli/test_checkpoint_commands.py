"""`vr eval`, `vr predict` and `vr export` on data or files that do not suit the checkpoint: one-line errors before
any work, the whole split scored, grey and colour images read for the model's channels.

Three tiny runs are trained through the CLI once per module, two processes at a time: a colours classifier on an
image folder (blue / green / red), a digits classifier (1 channel) and a shapes detector. The commands then run
through the CLI's entry point in this process.
"""

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from tests.commands import FAST, SMALL_SHAPES, vr
from vision_research.cli import main
from vision_research.export import core as export_core

COLOURS = {"blue": (0, 0, 220), "green": (0, 200, 0), "red": (220, 0, 0)}


def colour_folder(root: Path, names: list[str]) -> Path:
    """12 noisy 32×32 pictures of each of the colours, under the class ``names`` (in the order of ``COLOURS``)."""
    rng = np.random.default_rng(0)
    for name, colour in zip(names, COLOURS.values(), strict=True):
        (root / name).mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(np.array(colour) + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("checkpoint_commands")


@pytest.fixture(scope="module")
def runs(root):
    """{name: checkpoint} of the three runs. Digits are tested at training in 2 batches of 100 (debug=fast's
    limit_test_batches=2) of their 359 test images."""
    colours = colour_folder(root / "colours", list(COLOURS))
    trainings = {
        "colours": [
            "data=image_folder",
            f"data.root={colours}",
            "data.image_size=32",
            "data.batch_size=4",
            "data.num_workers=0",
            "model=lenet5_modern",
        ],
        "digits": ["data=digits", "data.eval_batch_size=100"],
        "detector": [
            "experiment=yolo_shapes",
            *SMALL_SHAPES,
            "model.width_mult=0.25",
            "trainer.limit_train_batches=1",
        ],
    }
    with pytest.MonkeyPatch.context() as env:
        env.setenv("VR_DATA_DIR", str(root / "data"))
        env.setenv("OMP_NUM_THREADS", "1")

        def train(name: str) -> Path:
            args = [*trainings[name], *FAST, "logger.tensorboard=false", f"hydra.run.dir=runs/{name}"]
            result = vr("train", *args, cwd=root)
            assert result.returncode == 0, result.stderr[-3000:]
            return root / "runs" / name / "checkpoints" / "last.ckpt"

        with ThreadPoolExecutor(2) as pool:
            checkpoints = dict(zip(trainings, pool.map(train, trainings), strict=True))
        yield checkpoints


@pytest.fixture(scope="module")
def pictures(root):
    """A folder of a grey and a colour picture, 40×40."""
    folder = root / "pictures"
    folder.mkdir()
    Image.new("L", (40, 40), 100).save(folder / "grey.png")
    Image.new("RGB", (40, 40), (100, 50, 0)).save(folder / "colour.png")
    return folder


def run(capsys, *args: str) -> tuple[int, str, str]:
    """``vr ARGS`` through the CLI's entry point: exit code, stdout, stderr."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(capsys, *args: str) -> str:
    """The message of the one ``error:`` line that ``vr ARGS`` ends with (exit code 2)."""
    code, _, err = run(capsys, *args)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err[-3000:]
    return err.removeprefix("error: ").strip()


def test_eval_refuses_data_of_other_targets_than_the_checkpoint_was_trained_on(runs, root, capsys):
    detector_on_folder = one_error_line(
        capsys,
        "eval",
        f"ckpt_path={runs['detector']}",
        "data=image_folder",
        f"data.root={root / 'colours'}",
        "data.image_size=128",
    )
    assert detector_on_folder == (
        "data=image_folder gives a class label per image, but this detection checkpoint was trained on data=shapes, "
        "which gives boxes (data.task=detection); evaluate it on data of that kind"
    )
    classifier_on_shapes = one_error_line(
        capsys, "eval", f"ckpt_path={runs['colours']}", "data=shapes", "data.image_size=32", *SMALL_SHAPES
    )
    assert classifier_on_shapes == (
        "data=shapes gives boxes (data.task=detection), but this classification checkpoint was trained on "
        "data=image_folder, which gives a class label per image; evaluate it on data of that kind"
    )


def test_eval_refuses_other_class_names_unless_allowed(runs, root, capsys):
    """The same pictures under Spanish names: sorted, the folders are azul, rojo, verde (blue, red, green)."""
    colores = colour_folder(root / "colores", ["azul", "verde", "rojo"])
    args = ["eval", f"ckpt_path={runs['colours']}", "data=image_folder", f"data.root={colores}", "data.image_size=32"]
    assert one_error_line(capsys, *args) == (
        "data=image_folder names its classes [azul, rojo, verde] but the checkpoint's are [blue, green, red]; pass "
        "allow_class_rename=true to score class i of the data as the checkpoint's class i"
    )
    code, out, err = run(capsys, *args, "allow_class_rename=true")
    assert code == 0, err[-3000:]
    assert err.strip() == (
        "vr eval: note: the data's classes [azul, rojo, verde] were scored as the checkpoint's [blue, green, red] "
        "(allow_class_rename=true)"
    )
    output = Path(out.splitlines()[0].removeprefix("eval: ").rsplit(" (", 1)[0])
    summary = json.loads((output / "metrics.json").read_text())
    assert summary["renamed_classes"] == {"data": ["azul", "rojo", "verde"], "checkpoint": ["blue", "green", "red"]}


def test_eval_scores_the_whole_split_of_a_debug_fast_run_and_says_how_many_images(runs, capsys):
    checkpoint = runs["digits"]
    code, out, err = run(capsys, "eval", f"ckpt_path={checkpoint}")
    assert code == 0, err[-3000:]
    output = checkpoint.parents[1] / "eval" / "test-digits"
    summary = json.loads((output / "metrics.json").read_text())
    assert summary["images"] == 359  # 20 % of 1,797 digits, not the 200 of the run's limit_test_batches=2
    assert f"eval: {output} (" in out and ", 359 test images)" in out
    trainer = yaml.safe_load((output / "config.yaml").read_text())["trainer"]  # the settings as evaluated
    assert trainer["limit_test_batches"] == trainer["limit_val_batches"] == 1.0
    # A limit asked on the command line is kept, and the count says what it scored.
    code, out, err = run(capsys, "eval", f"ckpt_path={checkpoint}", "trainer.limit_test_batches=1")
    assert code == 0, err[-3000:]
    assert ", 100 test images)" in out


def test_predict_takes_the_pixel_limit_for_a_run_of_in_memory_data(runs, pictures, capsys):
    """The digits run's data node has no max_image_pixels; the error says to raise it, and vr predict takes it."""
    message = one_error_line(
        capsys, "predict", f"ckpt_path={runs['digits']}", f"input={pictures / 'grey.png'}", "data.max_image_pixels=100"
    )
    assert message.startswith(f"{pictures / 'grey.png'}: 40×40 = 1,600 pixels, above data.max_image_pixels=100 ")
    code, out, err = run(
        capsys, "predict", f"ckpt_path={runs['digits']}", f"input={pictures / 'grey.png'}", "data.max_image_pixels=null"
    )
    assert code == 0 and err == "", err[-3000:]


def test_predict_reads_grey_and_colour_images_for_the_model_channels(runs, pictures, root, capsys):
    def predict(run_name: str, output: Path) -> str:
        code, _, err = run(capsys, "predict", f"ckpt_path={runs[run_name]}", f"input={pictures}", f"output={output}")
        assert code == 0, err[-3000:]
        return err.strip()

    assert predict("digits", root / "p1") == (
        f"vr predict: note: 1 of 2 images are in colour (e.g. {pictures / 'colour.png'}): read as grey "
        "(ITU-R 601-2 luma) for this 1-channel model"
    )
    rows = (root / "p1" / "predictions.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["file", "colour.png", "grey.png"]
    assert predict("colours", root / "p3") == (
        f"vr predict: note: 1 of 2 images are grey (e.g. {pictures / 'grey.png'}): read as R = G = B for this "
        "3-channel model"
    )


def test_predict_reads_a_colour_image_as_pil_converts_it_to_grey(runs, pictures):
    from vision_research.data.base import normalise
    from vision_research.predict import Predictor

    predictor = Predictor(runs["digits"])
    batch, (original,) = predictor.prepare([pictures / "colour.png"])
    assert batch.shape == (1, 1, 32, 32) and original.shape == (40, 40, 3)  # the original stays for drawings
    grey = np.array(Image.open(pictures / "colour.png").convert("L"))  # one colour: every pixel alike
    expected = normalise(torch.from_numpy(grey)[None, None], *predictor.task.input_stats)
    assert torch.allclose(batch, expected[..., :32, :32])


def test_export_checks_the_output_folder_before_any_work(runs, tmp_path, capsys, monkeypatch):
    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("vr export loaded the checkpoint before checking its output folder")

    monkeypatch.setattr(export_core, "load_task", no_work)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    args = ["export", f"ckpt_path={runs['colours']}", "format=torchscript"]
    assert one_error_line(capsys, *args, f"output={blocker}/sub/model.pt") == (
        f"output={blocker}/sub: cannot create this folder, {blocker} is a file"
    )
    # A read-only folder (root may write anywhere, so the permission is taken away here).
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert one_error_line(capsys, *args, f"output={tmp_path}/model.pt") == (
        f"output={tmp_path}: cannot write into {tmp_path} (permission denied); choose another output"
    )


def test_eval_and_predict_check_their_output_folder_too(runs, pictures, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    folder = tmp_path / "out"
    expected = f"output={folder}: cannot write into {tmp_path} (permission denied); choose another output"
    assert one_error_line(capsys, "eval", f"ckpt_path={runs['digits']}", f"output={folder}") == expected
    predict = ["predict", f"ckpt_path={runs['digits']}", f"input={pictures}", f"output={folder}"]
    assert one_error_line(capsys, *predict) == expected
    assert not folder.exists()
