"""``vr train resume=RUN_DIR``: continue a killed or finished run in its own directory from ``checkpoints/last.ckpt``.

The resumed run is composed from the overrides the run was started with (``RUN_DIR/.hydra/overrides.yaml``) plus
the new ones, and must equal the run's ``config.yaml`` except in :data:`MAY_CHANGE_ON_RESUME` (a longer schedule,
the progress bar, the thread and worker counts, what is tested at the end). Lightning restores weights, optimizer,
scheduler, epoch, step and callback states from the checkpoint, and
:class:`~vision_research.callbacks.RandomStateCheckpoint` the global random generators: the data order and what is
drawn from those generators (the in-memory datamodules' batch augmentation, dropout) continue exactly as in the
uninterrupted run. Loader workers too: the training loader starts its workers each epoch with seeds drawn from
those generators, and evaluation loaders draw from generators of their own (``data/base.py``); each worker seeds its
albumentations pipeline from its own seed (``data/loader.py``). A finished run resumed with nothing more to do is
``NothingToResume`` (``run_dir.check_work_left``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .config_tree import override_key, quoted_value
from .errors import ConfigError
from .run_dir import CONFIG, LAST_CHECKPOINT, OVERRIDES, check_run_to_resume

# Config keys a resumed run may change: how long it runs, how it reports, its processes and what it tests at the end.
MAY_CHANGE_ON_RESUME = (
    "resume",
    "trainer.max_epochs",
    "trainer.max_steps",
    "trainer.max_time",
    "trainer.enable_model_summary",
    "callbacks.progress_bar",
    "threads",
    "data.num_workers",
    "test_after_fit",
    "test_checkpoint",
)
# Keys the configs gained after runs were trained, with their defaults: absent from an older run's config.yaml, they
# may hold these values when it is resumed.
ADDED_KEYS = {"on_error": "stop", "data.persistent_workers": False}
# Learning-rate schedules whose steps do not depend on the run's length, so that the run may be lengthened on resume.
LENGTH_FREE_SCHEDULES = ("none", "step")


def resume_arguments(args: list[str]) -> list[str]:
    """``args`` of ``vr train`` with ``resume=RUN_DIR`` expanded: the run's own overrides first, then the new ones
    (which replace the same keys), the run directory as Hydra's, and ``resume`` as an absolute path."""
    resume = [a for a in args if override_key(a) == "resume"]
    if not resume:
        return args
    if any(a in ("-m", "--multirun") for a in args):
        raise ConfigError("resume=RUN_DIR continues one run; it cannot be part of a sweep (-m)")
    run_dir = Path(resume[-1].split("=", 1)[1].strip("'\"")).expanduser().resolve()
    check_run_to_resume(run_dir)
    new = [a for a in args if override_key(a) not in ("resume", "hydra.run.dir")]
    replaced = {override_key(a) for a in new if not a.startswith("-")}
    original = [o for o in OmegaConf.load(run_dir / OVERRIDES) if override_key(o) not in (*replaced, "resume")]
    quoted = quoted_value(str(run_dir))
    return [*original, *new, f"hydra.run.dir={quoted}", f"resume={quoted}"]


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(_flat(value, f"{prefix}{key}."))
        return flat or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): node}


def check_resume_config(run_dir: Path, cfg: DictConfig) -> None:
    """Raise ``ConfigError`` naming every key (with its old and new value) in which ``cfg`` differs from the run's
    ``config.yaml`` beyond :data:`MAY_CHANGE_ON_RESUME`."""
    stored = _flat(OmegaConf.to_container(OmegaConf.load(run_dir / CONFIG), resolve=True))
    current = _flat(OmegaConf.to_container(cfg, resolve=True))
    changed = [
        key
        for key in sorted(set(stored) | set(current))
        if stored.get(key, "<absent>") != current.get(key, "<absent>")
        and not any(key == allowed or key.startswith(allowed + ".") for allowed in MAY_CHANGE_ON_RESUME)
        and not (key not in stored and key in ADDED_KEYS and current.get(key) == ADDED_KEYS[key])
    ]
    lengthened = [k for k in ("trainer.max_epochs", "trainer.max_steps") if stored.get(k) != current.get(k)]
    schedule = OmegaConf.select(cfg, "task.scheduler.name", default="none")
    if lengthened and schedule not in LENGTH_FREE_SCHEDULES:
        key = lengthened[0]
        raise ConfigError(
            f"resume={run_dir}: {key} changes from {stored.get(key)!r} to {current.get(key)!r}, but the "
            f"{schedule} schedule (task.scheduler.name) was planned over the run's length and would restart or stop "
            f"at the old end; resume without changing {key}, or start a new run from these weights "
            f"(model.pretrained={run_dir / LAST_CHECKPOINT})"
        )
    if changed:
        shown = "; ".join(f"{k}: {stored.get(k, '<absent>')!r} -> {current.get(k, '<absent>')!r}" for k in changed)
        raise ConfigError(
            f"resume={run_dir}: the config differs from the run's config.yaml in {shown}. A resumed run may change "
            f"only {', '.join(MAY_CHANGE_ON_RESUME[1:])}; start a new run for anything else"
        )
