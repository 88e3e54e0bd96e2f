"""Edges of the `vr` command: --help on every subcommand, `vr data stats` plots only when asked, a mandatory
config value (``???``) left out, and an error raised in a loader worker printed without the worker's traceback."""

from __future__ import annotations

import pytest
from torch.utils.data import DataLoader, Dataset

from vision_research import benchmark, evaluate, models, predict, train
from vision_research.analysis import runs
from vision_research.cli import COMMANDS, error_message, main
from vision_research.data import formats, stats
from vision_research.data.shapes import generate_shapes
from vision_research.errors import DataError

# What each subcommand does once its arguments are parsed; --help must stop before any of it.
WORK = [
    (models, "create_model"),
    (train, "train"),
    (predict, "predict"),
    (evaluate, "evaluate"),
    (formats, "convert"),
    (stats, "load_for_stats"),
    (benchmark, "benchmark_models"),
    (runs, "load_runs"),
]


def run(args: list[str]) -> int:
    """``main(args)``'s exit code, whether returned or raised (argparse's --help exits)."""
    try:
        return main(args)
    except SystemExit as exit_:
        return exit_.code or 0


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_prints_its_usage_without_doing_work(command, flag, monkeypatch, capsys):
    def work(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"vr {command} {flag} did work")

    for module, name in WORK:
        monkeypatch.setattr(module, name, work)
    assert run([command, flag]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: vr {command}"), out[:300]


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    return generate_shapes(tmp_path_factory.mktemp("edges") / "shapes", num_train=2, num_val=1, num_test=1, seed=2)


def test_data_stats_writes_a_plot_only_when_asked(shapes_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["data", "stats", str(shapes_root / "VOC"), "--set", "train"]) == 0
    assert "histograms" not in capsys.readouterr().out
    assert list(tmp_path.rglob("*.png")) == []
    assert main(["data", "stats", str(shapes_root / "VOC"), "--set", "train", "--plot", "out/stats.png"]) == 0
    assert list(tmp_path.rglob("*.png")) == [tmp_path / "out/stats.png"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data=coco"], "data.root is required for data=coco"),
        (["data=voc"], "data.root is required for data=voc"),
        (["-m", "data=mnist,yolo"], "data.root is required for data=yolo"),
        (["+extra=???"], "extra is required"),
    ],
)
def test_a_missing_mandatory_value_is_one_error_line(overrides, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", *overrides, "debug=fast"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {message}"
    assert not (tmp_path / "runs").exists()  # refused before Hydra starts a run


class UnreadableImages(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> None:
        raise DataError(f"photos/{index}.jpg: cannot read the image (image file is truncated)")


def test_an_error_raised_in_a_loader_worker_prints_as_its_own_line():
    with pytest.raises(DataError) as caught:
        next(iter(DataLoader(UnreadableImages(), num_workers=1)))
    assert "Original Traceback" in str(caught.value)  # what torch re-raises in the main process
    assert error_message(caught.value) == "photos/0.jpg: cannot read the image (image file is truncated)"
