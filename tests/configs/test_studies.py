"""The ablation studies of experiments/: each study's sweep composes for every variant, and each variant trains
and evaluates one step (Lightning's fast_dev_run) with small data; a variant that starts from another run's weights
(model.pretrained, a local file) starts from a stand-in for them."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from vision_research.build import build_datamodule, build_task
from vision_research.config_tree import config_dir
from vision_research.models.hub import tag_source
from vision_research.train import train

STUDIES = sorted(p.stem for p in (Path(config_dir()) / "experiment").glob("study_*.yaml"))


def sweep_values(experiment: str) -> dict[str, list[str]]:
    """The study's ``hydra.sweeper.params``, each key with its list of values."""
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    params = dict(cfg.hydra.sweeper.params)
    parsed = OverridesParser.create().parse_overrides([f"{key}={value}" for key, value in params.items()])
    return {key: list(override.sweep_string_iterator()) for key, override in zip(params, parsed, strict=True)}


def test_every_study_sweeps_one_factor_over_seeds():
    assert len(STUDIES) >= 6
    for study in STUDIES:
        values = sweep_values(study)
        assert len(values.get("seed", [])) >= 3, f"{study}: fewer than 3 seeds"
        assert len(values) == 2, f"{study}: one factor and the seeds, got {sorted(values)}"


SMALL_SHAPES = ["data.num_train=8", "data.num_val=4", "data.num_test=4"]


def stand_in_weights(cfg: DictConfig, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """For a variant whose ``model.pretrained`` names a local file (a run of another experiment, which the test does
    not train): a ``model.pretrained`` override to a stand-in, the same backbone freshly initialised; else nothing."""
    pretrained = cfg.model.get("pretrained")
    if not pretrained or tag_source(pretrained) is not None:
        return []
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    path = tmp_path_factory.mktemp("pretrained") / "stand_in.pt"
    torch.save(build_task(cfg, datamodule).pretrained_module().state_dict(), path)
    return [f"model.pretrained={path}"]


@pytest.mark.parametrize("study", STUDIES)
def test_each_variant_of_the_study_trains_one_step(study, tmp_path_factory):
    values = sweep_values(study)
    (factor,) = [key for key in values if key != "seed"]
    shapes_root = tmp_path_factory.getbasetemp() / "shapes"
    for value in values[factor]:
        overrides = [
            f"experiment={study}",
            f"{factor}={value}",
            "+trainer.fast_dev_run=1",
            "callbacks.progress_bar=none",
        ]
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose("train", overrides=overrides)
        small = [*SMALL_SHAPES, f"data.root={shapes_root}_{cfg.data.num_train}"] if cfg.data.name == "shapes" else []
        overrides = [*overrides, *small, "data.batch_size=4", "data.eval_batch_size=4"]
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose("train", overrides=overrides)
        run_dir = tmp_path_factory.mktemp(f"{study}-{value}".replace("/", "-"))
        stand_in = stand_in_weights(cfg, tmp_path_factory)
        if stand_in:
            with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
                cfg = compose("train", overrides=[*overrides, *stand_in])
        summary = train(cfg, run_dir)
        assert summary["global_step"] == 1, f"{study} {factor}={value}"
        assert any(k.startswith("test/") for k in summary["metrics"]), f"{study} {factor}={value}: no test metrics"


@pytest.mark.parametrize("study", STUDIES)
def test_each_study_folder_holds_the_report_of_its_current_sweep(study):
    """experiments/<name>/ holds the README with the study's command, and the committed vr compare report has one
    group per variant of the sweep, each with every seed."""
    import pandas as pd

    folder = Path(__file__).resolve().parents[2] / "experiments" / study.removeprefix("study_")
    readme = (folder / "README.md").read_text()
    assert f"vr train -m experiment={study}" in readme and "![learning curves](curves.png)" in readme
    assert (folder / "curves.png").is_file()
    values = sweep_values(study)
    (factor,) = [key for key in values if key != "seed"]
    report = pd.read_csv(folder / "report.csv", index_col="group", dtype={"n": int})
    assert list(report.index) == [f"{factor.lstrip('+')}={value}" for value in values[factor]]
    assert (report["n"] == len(values["seed"])).all(), f"{study}: a run is missing from the report"
