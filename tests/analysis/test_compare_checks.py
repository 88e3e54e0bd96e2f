"""`vr compare` over runs that do not make one table: several data sets or tasks, and an unreadable config.yaml."""

import json

import pandas as pd
import pytest
import yaml

from tests.analysis.test_compare import write_run
from vision_research.analysis.compare import compare_runs
from vision_research.analysis.runs import load_runs
from vision_research.cli import main
from vision_research.errors import ConfigError


def config(task: str, data: str, root: str | None = None) -> dict:
    return {"task": {"name": task}, "data": {"name": data, "root": root}}


def write_runs(root, runs: list[tuple[str, dict, dict]]) -> None:
    """Finished runs: (folder name, config, metrics), each overriding data= and task=."""
    for name, settings, metrics in runs:
        overrides = [f"data={settings['data']['name']}", f"task={settings['task']['name']}"]
        write_run(root / name, overrides, settings, metrics)


def test_runs_of_several_data_sets_or_tasks_are_refused_unless_grouped_by_keys_given(tmp_path, capsys):
    write_runs(
        tmp_path,
        [
            ("mnist", config("classification", "mnist"), {"test/acc1": 0.9}),
            ("photos", config("classification", "image_folder", "/data/photos"), {"test/acc1": 0.5}),
            ("shapes", config("detection", "shapes"), {"test/map_50": 0.3}),
        ],
    )
    assert main(["compare", str(tmp_path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.strip() == (
        "error: the runs are of 3 data sets (mnist: 1 run, image_folder /data/photos: 1 run, shapes: 1 run) and of "
        "2 tasks (classification: 2 runs, detection: 1 run), whose figures do not compare in one table: compare the "
        "runs of one at a time (a folder each), or give --by to group them anyway"
    )
    assert not (tmp_path / "out").exists()
    comparison = compare_runs(load_runs([tmp_path]), by=["data"], metrics=["test/acc1"])  # asked for: grouped
    assert comparison.groups == ["data=mnist", "data=image_folder", "data=shapes"]


def test_a_folder_of_one_data_set_compares_its_runs(tmp_path):
    """Another root of the same data (a second image folder) is another data set; the same one is not."""
    photos = config("classification", "image_folder", "/data/photos")
    write_runs(tmp_path, [(f"run{seed}", photos, {"test/acc1": 0.5 + seed / 10}) for seed in range(2)])
    assert compare_runs(load_runs([tmp_path])).groups == ["all"]
    write_runs(tmp_path, [("other", config("classification", "image_folder", "/data/other"), {"test/acc1": 0.1})])
    with pytest.raises(ConfigError, match=r"2 data sets \(image_folder /data/other: 1 run, image_folder /data/photos"):
        compare_runs(load_runs([tmp_path]))


def test_eval_results_compare_by_the_data_they_were_scored_on(tmp_path):
    """Runs trained on two data sets and scored by vr eval on a third compare on that one (--eval NAME)."""
    for name, data in (("mnist", "mnist"), ("digits", "digits")):
        write_runs(tmp_path, [(name, config("classification", data), {"test/acc1": 0.9})])
        evaluated = tmp_path / name / "eval" / "test-digits"
        evaluated.mkdir(parents=True)
        (evaluated / "config.yaml").write_text(yaml.safe_dump(config("classification", "digits")))
        (evaluated / "metrics.json").write_text(json.dumps({"metrics": {"test/acc1": 0.8}}))
    comparison = compare_runs(load_runs([tmp_path], "eval/test-digits/metrics.json"))
    assert comparison.groups == ["data=digits", "data=mnist"]
    with pytest.raises(ConfigError, match="2 data sets"):
        compare_runs(load_runs([tmp_path]))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("model: [lenet5\n  bad: {\n", "not valid YAML at line 2, column 6 (expected ',' or ']', but got ':')"),
        (b"\xff\xfe\x00 garbage", "not UTF-8 text (invalid start byte at byte 0)"),
        ("just some text", "a str, not a mapping of settings"),
        ("", "empty"),
    ],
)
def test_a_run_with_an_unreadable_config_is_listed_with_the_reason(tmp_path, capsys, text, reason):
    write_runs(tmp_path, [(f"run{seed}", config("classification", "mnist"), {"test/acc1": 0.9}) for seed in range(3)])
    broken = tmp_path / "run2" / "config.yaml"
    broken.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert main(["compare", str(tmp_path), "--output", str(tmp_path / "out")]) == 0
    assert f"- `{tmp_path / 'run2'}` (all): unreadable config.yaml: {reason}" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "out" / "report.csv", index_col="group").loc["all", "n"] == 2
