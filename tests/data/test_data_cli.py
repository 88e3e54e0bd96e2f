"""`vr convert` and `vr data stats`, run in-process through the CLI's main()."""

from __future__ import annotations

import json

import pytest

from vision_research.cli import main
from vision_research.data.shapes import generate_shapes
from vision_research.data.stats import dataset_stats, load_for_stats


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return generate_shapes(tmp_path_factory.mktemp("cli") / "shapes", num_train=6, num_val=2, num_test=2, seed=1)


def test_convert_voc_to_coco_and_back_to_yolo(root, tmp_path, capsys):
    assert main(["convert", "voc", "coco", str(root / "VOC"), str(tmp_path / "coco"), "--set", "val"]) == 0
    out = capsys.readouterr().out
    written = json.loads((tmp_path / "coco/annotations/instances_val.json").read_text())
    original = json.loads((root / "annotations/instances_val.json").read_text())
    assert f"converted 2 images, {len(original['annotations'])} objects" in out
    assert [a["bbox"] for a in written["annotations"]] == [a["bbox"] for a in original["annotations"]]
    assert (tmp_path / "coco/images/val_00001.png").is_file()
    json_path = str(tmp_path / "coco/annotations/instances_val.json")
    assert main(["convert", "coco", "yolo", json_path, str(tmp_path / "yolo"), "--set", "val"]) == 0
    assert (tmp_path / "yolo/labels/val/val_00000.txt").read_text() == (
        root / "YOLO/labels/val/val_00000.txt"
    ).read_text()


def test_convert_reports_skipped_boxes(tmp_path, root, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "images/a.png").write_bytes((root / "images/val/val_00000.png").read_bytes())
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels/a.txt").write_text("0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.001 0.2\n")
    assert main(["convert", "yolo", "coco", str(tmp_path), str(tmp_path / "out"), "--class-names", "a,b"]) == 0
    out = capsys.readouterr().out
    assert "converted 1 images, 1 objects" in out
    assert "skipped 1: degenerate box (e.g." in out and "labels/a.txt:2" in out


def test_stats_prints_counts_and_writes_the_histograms(root, tmp_path, capsys):
    plot = tmp_path / "stats.png"
    assert main(["data", "stats", str(root / "VOC"), "--set", "train", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    stats = dataset_stats(load_for_stats(root / "VOC", "voc", "train"))
    assert f"6 images, {stats.objects} objects" in out
    assert sum(stats.class_counts.values()) == stats.objects == int(stats.boxes_per_image.sum())
    assert plot.is_file() and plot.stat().st_size > 10_000
    assert main(["data", "stats", str(root / "annotations/instances_val.json"), "--plot", str(plot)]) == 0
    assert "2 images" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["convert", "voc", "cooc", "a", "b"], "invalid choice: 'cooc'"),
        (["convert", "voc", "coco", "/no/such/voc", "b"], "not a Pascal VOC folder"),
        (["data", "stats", "/no/such/folder"], "/no/such/folder: no such file or folder"),
        (["data", "stat", "x"], "invalid choice: 'stat'"),
    ],
)
def test_mistakes_are_one_error_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
