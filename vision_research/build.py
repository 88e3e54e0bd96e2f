"""Building a run's pieces from its config: the datamodule, the task, the Trainer's options, the user's modules.

``vr train`` builds all of them; ``vr eval`` the datamodule and the Trainer options (the task comes from the
checkpoint, :func:`vision_research.run_dir.load_task`); ``vr predict`` and ``vr export`` import the run's modules.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from .data import create_datamodule
from .errors import ConfigError, close_matches
from .models.hub import pretrained_class_names
from .registry import accepted_options
from .speed import resolve_precision
from .tasks import TASKS


def plain(node: Any) -> Any:
    """A config node as plain Python containers, resolved (other values as they are)."""
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def build_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    """The datamodule named by ``cfg.data.name``, with the node's other keys as its options."""
    data_options = plain(cfg.data)
    return create_datamodule(data_options.pop("name"), **data_options)


def build_task(cfg: DictConfig, datamodule: L.LightningDataModule) -> L.LightningModule:
    """The task named by ``cfg.task.name`` over the model of ``cfg.model``, given what the datamodule knows
    (the task's ``options_from_data``: the ``tasks.contract.TaskData`` facts its constructor names, and more); the
    class names of ``torchvision:`` / ``timm:`` weights when the data gives none for as many classes."""
    task_options = plain(cfg.task)
    name = task_options.pop("name")
    model_options = plain(cfg.model)
    model_name = model_options.pop("name")
    pretrained = model_options.pop("pretrained", None)
    pretrained_source = model_options.pop("pretrained_source", "native")
    options = {
        "model": model_name,
        "model_options": model_options,
        "pretrained": pretrained,
        "pretrained_source": pretrained_source,
        **task_options,
    }
    task_class = TASKS.get(name)
    TASKS.check_options(name, options)
    options = task_class.options_from_data(options, datamodule)
    # Published weights name their classes: a task with as many classes and no names from the data takes them.
    if "class_names" in accepted_options(task_class) and not options.get("class_names"):
        names = pretrained_class_names(pretrained)
        if names and options.get("num_classes") == len(names):
            options["class_names"] = names
    return task_class(**options)


def trainer_options(cfg: DictConfig) -> dict[str, Any]:
    """``cfg.trainer`` as Trainer keyword arguments, checked against the Trainer's signature
    (``precision: auto`` resolved for this machine by :func:`vision_research.speed.resolve_precision`)."""
    options = plain(cfg.trainer)
    allowed = set(inspect.signature(L.Trainer.__init__).parameters) - {"self", "logger", "callbacks"}
    for key in options:
        if key not in allowed:
            matches = close_matches(key, allowed)
            hint = f" Did you mean {', '.join('trainer.' + m for m in matches)}?" if matches else ""
            raise ConfigError(f"unknown config key 'trainer.{key}': not a Lightning Trainer argument.{hint}")
    if "precision" in options:
        options["precision"] = resolve_precision(options["precision"], str(options.get("accelerator", "auto")))
    return options


def import_user_modules(modules: list[str]) -> None:
    """Import the modules named in ``cfg.imports`` (from the current folder too) so they can register."""
    if modules and "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"imports: cannot import '{module}': {err}") from err
