"""VisionTask declares the options every task shares once: the registry's signature reading, Lightning's saved
hparams and checkpoints still see each task's whole list, as the tasks spelled them out before."""

from __future__ import annotations

import lightning
import pytest
import torch

from vision_research.tasks import TASKS

SHARED = {
    "model",
    "num_classes",
    "in_chans",
    "model_options",
    "pretrained",
    "pretrained_source",
    "optimizer",
    "scheduler",
    "class_names",
    "mean",
    "std",
}
# What each task's constructor listed beside the shared options when every task spelled them all out: the hparams
# its checkpoints hold.
OWN = {
    "classification": {"new_classifier", "label_smoothing", "aux_loss_weight"},
    "localization": {"box_loss_weight", "iou_threshold"},
    "segmentation": {
        "head",
        "aux_loss_weight",
        "class_weights",
        "ignore_index",
        "log_images_every_n_epochs",
        "num_images_to_log",
    },
    "detection": {
        "image_size",
        "head",
        "loss",
        "postprocess",
        "coco_backend",
        "category_ids",
        "log_images_every_n_epochs",
        "num_images_to_log",
    },
}
SMALL = {"model": "resnet18", "model_options": {"width_mult": 0.25}, "num_classes": 3}


@pytest.mark.parametrize("name", sorted(OWN))
def test_the_registry_reads_every_option(name):
    assert set(TASKS.options(name)) == SHARED | OWN[name]


@pytest.mark.parametrize("name", sorted(OWN))
def test_hparams_hold_every_option_and_a_checkpoint_rebuilds_the_task(name, tmp_path):
    task_class = TASKS.get(name)
    options = {**SMALL, "class_names": ["a", "b", "c"], "mean": [0.5] * 3, "std": [0.25] * 3}
    if name == "detection":
        options["image_size"] = 64
    task = task_class(**options)
    assert set(task.hparams) == SHARED | OWN[name]
    assert {k: task.hparams[k] for k in options} == options
    path = tmp_path / "task.ckpt"
    checkpoint = {"state_dict": task.state_dict(), task.CHECKPOINT_HYPER_PARAMS_KEY: dict(task.hparams)}
    torch.save({**checkpoint, "pytorch-lightning_version": lightning.__version__}, path)
    loaded = task_class.load_from_checkpoint(path, weights_only=True)
    assert dict(loaded.hparams) == dict(task.hparams)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in task.state_dict().items())
