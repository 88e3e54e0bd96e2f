"""`vr compare`: grouping, seed statistics against scipy, failed runs listed, curves and TensorBoard group means.

The run folders are written here the way `vr train -m` writes them (config.yaml, .hydra/, metrics.json, TensorBoard
events with an `epoch` scalar per logged step), with figures drawn from a seeded generator.
"""

import json
import math
import statistics

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from vision_research.analysis.compare import compare_runs, grouping_keys, welch_difference
from vision_research.analysis.runs import load_runs
from vision_research.cli import main
from vision_research.errors import ConfigError

EPOCHS = 4
STEPS_PER_EPOCH = 10


def write_run(folder, overrides, config, metrics=None, curve=None, choices=None):
    """A run directory as vr train writes it; ``metrics=None`` leaves it unfinished (no metrics.json)."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (folder / ".hydra" / "hydra.yaml").write_text(
        yaml.safe_dump({"hydra": {"runtime": {"choices": {"hydra/launcher": "basic", **(choices or {})}}}})
    )
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    if curve is not None:
        writer = SummaryWriter(str(folder))
        for epoch, value in enumerate(curve):
            step = (epoch + 1) * STEPS_PER_EPOCH - 1
            writer.add_scalar("val/acc1", value, step)
            writer.add_scalar("epoch", epoch, step)
        writer.close()
    if metrics is not None:
        summary = {
            "metrics": metrics,
            "parameters": 1000,
            "gflops": 0.5,
            "seconds": 10.0,
            "train_images_per_second": 99,
        }
        (folder / "metrics.json").write_text(json.dumps(summary))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two activations × five seeds (one relu run crashed) + one tanh run of another width (n = 1)."""
    root = tmp_path_factory.mktemp("sweep")
    rng = np.random.default_rng(7)
    figures: dict[str, list[float]] = {"tanh": [], "relu": []}
    curves: dict[str, list[np.ndarray]] = {"tanh": [], "relu": []}
    job = 0
    for activation, centre in (("tanh", 0.95), ("relu", 0.97)):
        for seed in range(5):
            overrides = [f"model.activation={activation}", f"seed={seed}", "experiment=study"]
            config = {"seed": seed, "task": {"name": "classification"}, "model": {"activation": activation}}
            crashed = activation == "relu" and seed == 3
            acc = float(centre + rng.normal(0, 0.01))
            curve = np.clip(acc - 0.1 / np.arange(1, EPOCHS + 1) + rng.normal(0, 0.005, EPOCHS), 0, 1)
            metrics = None if crashed else {"test/acc1": acc, "best/val/acc1": float(curve.max()), "test/loss": 0.1}
            write_run(root / f"{job}_{activation}_{seed}", overrides, config, metrics, curve, {"experiment": "study"})
            if not crashed:
                figures[activation].append(acc)
                curves[activation].append(curve)
            job += 1
    return root, figures, curves


def welch_interval_by_hand(a, b, confidence=0.95):
    """Welch (1947): the standard error from each group's own variance, Welch–Satterthwaite degrees of freedom."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.5 + confidence / 2, df) * math.sqrt(va + vb)
    delta = statistics.fmean(a) - statistics.fmean(b)
    return delta - half, delta + half


def test_report_figures_equal_an_independent_computation(sweep, tmp_path):
    root, figures, _ = sweep
    assert main(["compare", str(root), "--output", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "report.csv", index_col="group")
    assert list(table.index) == ["model.activation=tanh", "model.activation=relu"]  # seed excepted, order of runs
    assert list(table["model.activation"]) == ["tanh", "relu"]
    relu, tanh = table.loc["model.activation=relu"], table.loc["model.activation=tanh"]
    assert relu["n"] == 4 and tanh["n"] == 5  # the crashed run is not counted
    for row, values in ((tanh, figures["tanh"]), (relu, figures["relu"])):
        assert row["test/acc1 mean"] == pytest.approx(statistics.fmean(values), abs=1e-12)
        assert row["test/acc1 std"] == pytest.approx(statistics.stdev(values), abs=1e-12)
    low, high = welch_interval_by_hand(figures["relu"], figures["tanh"])
    assert relu["test/acc1 ci_low"] == pytest.approx(low, abs=1e-9)
    assert relu["test/acc1 ci_high"] == pytest.approx(high, abs=1e-9)
    assert relu["test/acc1 delta"] == pytest.approx(
        statistics.fmean(figures["relu"]) - statistics.fmean(figures["tanh"])
    )
    assert bool(relu["test/acc1 significant"]) == (low > 0 or high < 0)
    assert tanh["test/acc1 note"] == "baseline"
    report = (tmp_path / "report.md").read_text()
    assert "| model.activation=relu | 4 |" in report and "baseline" in report
    assert "8_relu_3" in report and "did not finish (no metrics.json)" in report  # job 8: relu, seed 3


def test_welch_interval_needs_three_runs_per_group():
    assert math.isnan(welch_difference([0.9, 0.91], [0.8, 0.82, 0.81]).low)
    assert welch_difference([0.9, 0.91], [0.8, 0.82, 0.81]).note == "n < 3"
    assert welch_difference([0.9, 0.91, 0.92], [0.8, 0.82, 0.81]).significant
    assert not welch_difference([0.9, 0.8, 0.85], [0.86, 0.82, 0.84]).significant


def test_baseline_option_and_grouping_by_chosen_keys(sweep, tmp_path):
    root, figures, _ = sweep
    assert main(["compare", str(root), "--baseline", "model.activation=relu", "--output", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "report.csv", index_col="group")
    low, high = welch_interval_by_hand(figures["tanh"], figures["relu"])
    assert table.loc["model.activation=tanh", "test/acc1 ci_low"] == pytest.approx(low, abs=1e-9)
    assert table.loc["model.activation=tanh", "test/acc1 ci_high"] == pytest.approx(high, abs=1e-9)
    runs = load_runs([root])
    assert grouping_keys(runs) == ["model.activation"]  # experiment is the same everywhere, seed is excepted
    by_seed = compare_runs(runs, by=["seed"], metrics=["test/acc1"])
    assert by_seed.groups == [f"seed={s}" for s in range(5)]
    assert list(by_seed.table["n"]) == [2, 2, 2, 1, 2]


def test_curves_png_and_tensorboard_group_scalars_hold_the_means(sweep, tmp_path):
    root, _, curves = sweep
    assert main(["compare", str(root), "--output", str(tmp_path)]) == 0
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    for activation in ("tanh", "relu"):
        events = EventAccumulator(str(tmp_path / f"model.activation={activation}"))
        events.Reload()
        logged = events.Scalars("val/acc1")
        assert [e.step for e in logged] == [(e + 1) * STEPS_PER_EPOCH - 1 for e in range(EPOCHS)]
        np.testing.assert_allclose([e.value for e in logged], np.mean(curves[activation], axis=0), rtol=1e-6)
        values, metrics = hparams_of(events)
        assert values == {"model/activation": activation, "runs": len(curves[activation])}
        assert "hp/test_acc1" in metrics and "hp/best_val_acc1" in metrics
        assert events.Scalars("hp/test_acc1")[0].value == pytest.approx(
            pd.read_csv(tmp_path / "report.csv", index_col="group").loc[
                f"model.activation={activation}", "test/acc1 mean"
            ]
        )


def hparams_of(events: EventAccumulator) -> tuple[dict, set[str]]:
    """The HParams tab's view of an event file: hyper-parameter values and metric names."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = events.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    values = {k: v.string_value or v.number_value for k, v in session.hparams.items()}
    return values, {m.name.tag for m in experiment.metric_infos}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nowhere"], "nowhere: no such folder of runs"),
        (["EMPTY"], "no runs under it"),
        (["SWEEP", "--baseline", "model.activation=gelu"], "--baseline model.activation=gelu: no group matches"),
        (["SWEEP", "--baseline", "relu"], "expected key=value"),
        (["SWEEP", "--by", "model.activaton"], "Did you mean: model.activation"),
        (["SWEEP", "--metrics", "test/acc"], "Did you mean: test/acc1"),
    ],
)
def test_mistakes_are_one_line_errors(sweep, tmp_path, capsys, args, message):
    root, _, _ = sweep
    (tmp_path / "EMPTY").mkdir()
    names = {"EMPTY": str(tmp_path / "EMPTY"), "SWEEP": str(root)}
    assert main(["compare", *(names.get(a, a) for a in args), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_a_comparison_without_any_finished_run_says_so(tmp_path):
    write_run(tmp_path / "0_a", ["lr=1"], {"seed": 0})
    with pytest.raises(ConfigError, match="no run finished among 1 .*0_a: did not finish"):
        compare_runs(load_runs([tmp_path]))


def test_eval_option_compares_the_runs_vr_eval_results(tmp_path):
    """--eval NAME reads <run>/eval/NAME/metrics.json (what vr eval writes) and groups by the runs' own overrides."""
    for job, (width, seed) in enumerate((w, s) for w in (1, 2) for s in range(3)):
        folder = tmp_path / f"{job}_w{width}_s{seed}"
        write_run(
            folder,
            [f"model.width={width}", f"seed={seed}"],
            {"seed": seed, "model": {"width": width}},
            metrics={"test/acc1": 0.5},
        )
        if job != 5:  # the last run was not evaluated
            (folder / "eval" / "test-digits").mkdir(parents=True)
            summary = {"metrics": {"test/acc1": 0.1 * width + 0.01 * seed}, "split": "test", "seconds": 1.0}
            (folder / "eval" / "test-digits" / "metrics.json").write_text(json.dumps(summary))
    comparison = compare_runs(load_runs([tmp_path], "eval/test-digits/metrics.json"), metrics=["test/acc1"])
    assert comparison.groups == ["model.width=1", "model.width=2"]
    assert comparison.table.loc["model.width=1", "test/acc1 mean"] == pytest.approx(0.11)
    assert comparison.table.loc["model.width=2", "test/acc1 mean"] == pytest.approx(0.205)  # seeds 0, 1
    assert [run.problem for run in comparison.unfinished] == ["no eval/test-digits/metrics.json"]


def test_a_resumed_run_stays_in_its_group(tmp_path):
    """A run continued with ``resume=`` lists that override (its own folder): it is not a setting to group by."""
    for seed in range(3):
        overrides = [f"seed={seed}", "model.activation=relu"]
        if seed == 1:
            overrides.append(f"resume={tmp_path / 'run1'}")
        config = {"seed": seed, "task": {"name": "classification"}, "model": {"activation": "relu"}}
        write_run(tmp_path / f"run{seed}", overrides, config, {"test/acc1": 0.9 + seed / 100})
    assert grouping_keys(load_runs([tmp_path])) == []
