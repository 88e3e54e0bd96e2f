"""The config tree: every model and data config names a registered builder and only options it accepts."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from vision_research.config_tree import config_dir
from vision_research.models import list_models, model_options

MODEL_CONFIGS = sorted((Path(config_dir()) / "model").glob("*.yaml"))
NOT_OPTIONS = {"name", "pretrained", "pretrained_source"}


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=lambda p: p.stem)
def test_model_config_composes_and_fits_its_builder(path):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={path.stem}"])
    model = cfg.model
    assert model.pretrained is None and model.pretrained_source == "native"
    if model.name.startswith("timm:"):
        return
    assert model.name in list_models()
    unknown = set(model) - NOT_OPTIONS - set(model_options(model.name))
    assert not unknown, f"{path.name}: {sorted(unknown)} are not options of {model.name}"


DATA_CONFIGS = sorted((Path(config_dir()) / "data").glob("*.yaml"))


@pytest.mark.parametrize("path", DATA_CONFIGS, ids=lambda p: p.stem)
def test_data_config_composes_and_fits_its_datamodule(path):
    from vision_research.data.registry import DATAMODULES

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[f"data={path.stem}"])
    options = DATAMODULES.options(cfg.data.name)
    unknown = set(cfg.data) - {"name"} - set(options)
    assert not unknown, f"{path.name}: {sorted(unknown)} are not options of datamodule {cfg.data.name}"


EXPERIMENTS = sorted((Path(config_dir()) / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_composes_into_options_its_task_and_data_accept(path):
    from omegaconf import OmegaConf

    from vision_research.data.registry import DATAMODULES
    from vision_research.tasks import TASKS

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={path.stem}"])  # a required data.root may stay ??? here
    task = OmegaConf.to_container(cfg.task, resolve=True)
    provided = {"model", "model_options", "pretrained", "pretrained_source", "num_classes", "in_chans"}
    TASKS.check_options(task.pop("name"), {**task, **dict.fromkeys(provided)})
    unknown = set(cfg.data) - {"name"} - set(DATAMODULES.options(cfg.data.name))
    assert not unknown, f"{path.name}: data keys {sorted(unknown)}"
    assert cfg.model.name in list_models()


@pytest.mark.parametrize(
    ("overrides", "run_name"),
    [
        ([], "classification_lenet5_modern_mnist"),
        (["experiment=fcn_shapes"], "fcn8s_resnet18_shapes"),
        (["experiment=fcn_shapes", "task.head.variant=32s"], "fcn32s_resnet18_shapes"),
        (["experiment=yolo_shapes"], "yolo_v1_resnet18_shapes"),
        (["experiment=yolo_shapes_anchors"], "yolo_anchors_resnet18_shapes"),
        (["experiment=localize_shapes"], "localization_resnet18_shapes"),
        (["model=timm", "model.name=timm:resnet18", "data=digits"], "classification_timm-resnet18_digits"),
    ],
)
def test_run_names_tell_tasks_and_heads_apart(overrides, run_name):
    import vision_research.cli  # noqa: F401  (registers the path_safe resolver)

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    assert cfg.run_name == run_name
