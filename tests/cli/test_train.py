"""The `vr` command end to end: a run directory with everything in it, a sweep, and clean error messages."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.commands import FAST, vr
from vision_research.cli.overrides import validate_overrides
from vision_research.errors import ConfigError


def scalar_tags(run_dir: Path) -> set[str]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return set(events.Tags()["scalars"])


def test_models_lists_parameter_counts(tmp_path):
    result = vr("models", "lenet*", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "lenet5_modern" in result.stdout and "61,706" in result.stdout and "60,000" in result.stdout
    assert "fashion_mnist_cnn" not in result.stdout  # the pattern filters
    # LeNet-5 modern on 32×32, multiply-adds: C1 28²·6·25 + C3 10²·16·150 + C5 120·400 + F6 120·84 + out 84·10
    macs = 28 * 28 * 6 * 25 + 10 * 10 * 16 * 150 + 120 * 400 + 120 * 84 + 84 * 10
    assert f"{2 * macs / 1e9:.2f}" in result.stdout


def test_train_writes_a_complete_run_directory(tmp_path):
    result = vr("train", *FAST, "trainer.max_epochs=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").glob("*/*_classification_lenet5_modern_mnist")
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["name"] == "lenet5_modern"
    assert config["run_name"] == "classification_lenet5_modern_mnist"  # resolved: task, model, data
    summary = json.loads((run_dir / "metrics.json").read_text())
    # The task's forward on one 32×32 digit: LeNet-5 modern's multiply-adds (as in the test above) × 2.
    macs = 28 * 28 * 6 * 25 + 10 * 10 * 16 * 150 + 120 * 400 + 120 * 84 + 84 * 10
    assert summary["gflops"] == pytest.approx(2 * macs / 1e9, rel=1e-9)
    assert summary["train_images_per_second"] > 0
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    # last.ckpt holds the final weights (Lightning's save_last would only copy the best one) and is tested.
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == summary["global_step"] == 10
    assert summary["tested_checkpoint"].endswith("last.ckpt")
    assert {"val/acc1", "test/acc1", "test/acc5", "best/val/acc1"} <= set(summary["metrics"])
    assert summary["parameters"] == 61_706
    assert {"train/loss", "val/acc1", "val/acc5", "hp/test_acc1"} <= scalar_tags(run_dir)
    # The run's log file keeps Lightning's messages (Lightning keeps them to itself when imported before Hydra's
    # logging is set up).
    assert "`Trainer.fit` stopped: `max_epochs=2` reached." in (run_dir / "cli.log").read_text()


@pytest.mark.slow  # 40 s: four runs through Hydra's multirun
def test_sweep_makes_one_run_per_combination(tmp_path):
    result = vr("train", "-m", "model=lenet5,lenet5_modern", "seed=1,2", *FAST, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dirs = sorted(p.parent for p in (tmp_path / "runs" / "sweeps").glob("*/*/metrics.json"))
    assert len(run_dirs) == 4
    combos = {
        (
            yaml.safe_load((p / "config.yaml").read_text())["model"]["name"],
            yaml.safe_load((p / "config.yaml").read_text())["seed"],
        )
        for p in run_dirs
    }
    assert combos == {(m, s) for m in ("lenet5", "lenet5_modern") for s in (1, 2)}
    for run_dir in run_dirs:
        assert "val/acc1" in scalar_tags(run_dir)
    # The HParams tab: every run holds its swept values and final metrics.
    session, metric_tags = hparams_session(run_dirs[0])
    assert session["model/name"].string_value in ("lenet5", "lenet5_modern") and "seed" in session
    assert {"hp/test_acc1", "hp/best_val_acc1"} <= metric_tags
    # vr compare on the real sweep: two groups of two seeds, too few for an interval.
    sweep_root = run_dirs[0].parent
    result = vr("compare", str(sweep_root), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = (sweep_root / "compare" / "report.md").read_text()
    assert "| model=lenet5 | 2 |" in report and "| model=lenet5_modern | 2 |" in report and "(n < 3)" in report
    assert (sweep_root / "compare" / "curves.png").is_file() and "val/acc1" in scalar_tags(
        sweep_root / "compare" / "model=lenet5_modern"
    )


def hparams_session(run_dir: Path) -> tuple[dict, set[str]]:
    """What TensorBoard's HParams tab reads from a run: its hyper-parameter values and metric names."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(run_dir))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    return dict(session.session_start_info.hparams), {m.name.tag for m in experiment.metric_infos}


USER_MODEL = """
from torch import nn
from vision_research.models.base import Backbone, default_cfg, feature_info
from vision_research.models.registry import register_model


class UserNet(Backbone):
    def __init__(self, num_classes=10, in_chans=1, width=4):
        super().__init__()
        self.num_classes = num_classes
        self.stage = nn.Sequential(nn.Conv2d(in_chans, width, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(width, num_classes)
        self.feature_info = [feature_info(width, 2, "stage")]
        self.default_cfg = default_cfg((in_chans, 32, 32), (0.5,), (0.5,), num_classes, "stage.0", "fc")

    def forward_features(self, x):
        return [self.stage(x)]

    def forward_head(self, features):
        return self.fc(features[-1].mean((2, 3)))

    def reset_classifier(self, num_classes):
        self.fc = nn.Linear(self.fc.in_features, num_classes)


@register_model
def user_net(num_classes=10, in_chans=1, width=4):
    return UserNet(num_classes, in_chans, width)
"""


def test_a_backbone_in_one_user_file_trains_from_the_cli(tmp_path):
    (tmp_path / "my_models.py").write_text(USER_MODEL)
    result = vr("train", "imports=[my_models]", "model.name=user_net", "+model.width=6", *FAST, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (metrics,) = (tmp_path / "runs").glob("*/*/metrics.json")
    assert json.loads(metrics.read_text())["parameters"] == 6 * 9 + 6 + 6 * 10 + 10


@pytest.mark.parametrize(
    "args,expected",
    [
        (["train", "model=lenet55"], "unknown model 'lenet55' (configs/model/). Did you mean: lenet5"),
        (["train", "data=mnsit"], "unknown data 'mnsit' (configs/data/). Did you mean: mnist"),
        (["train", "trainer.max_epoch=3"], "unknown config key 'trainer.max_epoch'. Did you mean: trainer.max_epochs"),
        (["train", "-m", "model=lenet5,lenet55"], "unknown model 'lenet55'"),
        (["train", "model.name=lenet55"], "unknown model 'lenet55'. Did you mean: lenet5"),
        (["train", "data.name=mnsit"], "unknown datamodule 'mnsit'. Did you mean: mnist"),
        (["train", "data.root=/no/such/folder"], "data.root '/no/such/folder' is not a folder"),
        (["train", "imports=[no_such_module]"], "imports: cannot import 'no_such_module'"),
        (["trian"], "unknown command 'trian'. Did you mean: train"),
    ],
)
def test_user_mistakes_end_in_one_clear_line(tmp_path, args, expected):
    result = vr(*args, *FAST, cwd=tmp_path) if args[0] == "train" else vr(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_validate_overrides_accepts_good_ones_and_names_bad_values():
    validate_overrides(["model=lenet5", "trainer.max_epochs=2", "+model.extra=1", "seed=1,2"])
    with pytest.raises(ConfigError, match="trainer.max_epochs"):
        validate_overrides(["trainer.max_epochs=abc"])
    with pytest.raises(ConfigError, match="cannot parse"):
        validate_overrides(["model=="])


def test_weight_ema_callback_is_configurable():
    from hydra import compose, initialize_config_dir

    from vision_research.config_tree import config_dir
    from vision_research.tasks import ImageClassifier
    from vision_research.train import build_callbacks

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["callbacks.ema_decay=0.99"])
        bad = compose("train", overrides=["callbacks.ema_decay=1.5"])
    names = [type(c).__name__ for c in build_callbacks(cfg, ImageClassifier("lenet5_modern"), Path("unused"))]
    assert names.count("RunCheckpoint") == 2 and "WarmupEMA" in names
    with pytest.raises(ConfigError, match="ema_decay"):
        build_callbacks(bad, ImageClassifier("lenet5_modern"), Path("unused"))


def test_run_directory_names_are_path_safe():
    from vision_research.paths import path_safe

    assert path_safe("timm:resnet18_mnist") == "timm-resnet18_mnist"
    assert path_safe("data.root=/data/mnist,seed=1") == "data.root=-data-mnist,seed=1"
    # A sweep over many overrides: the name stays under the file systems' 255 bytes, and distinct runs stay distinct.
    long_a, long_b = ",".join(f"model.option_{i}=value_{i}" for i in range(30)), "x" + ",".join(["a=1"] * 80)
    assert len(path_safe(long_a)) == len(path_safe(long_b)) == 160
    assert path_safe(long_a) != path_safe(long_a.replace("value_29", "value_30"))
