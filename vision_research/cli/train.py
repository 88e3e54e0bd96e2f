"""``vr train``: a Hydra app over ``configs/train.yaml`` — one run, a sweep (``-m``), or ``resume=RUN_DIR``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from ..config_tree import config_dir
from ..errors import NothingToResume, RunInterrupted, VisionResearchError, check_choice
from .command import Command, config_summary, config_usage, error_message, metrics_line, wants_help
from .overrides import (
    check_launch,
    check_output_folders,
    config_groups,
    overrides_only,
    search_path,
    validate_overrides,
)

# What a sweep does after a job failed (configs/train.yaml: on_error).
ON_ERROR = ("stop", "continue")
# Lightning's DDP launcher re-runs `python sys.argv[0] sys.argv[1:]` (or `python -m <__main__'s module>`) for the
# other ranks; the script that takes overrides without a subcommand is launch/train.py.
TRAIN_SCRIPT = Path(__file__).resolve().parent.parent / "launch" / "train.py"


def usage(args: list[str] = ()) -> str:
    """``vr train --help``: the config's header, its groups and their options (with ``--config-dir`` folders)."""
    groups = config_groups(search_path(args)).items()
    details = [
        "config groups (GROUP=OPTION):",
        *(f"  {group}: {', '.join(options)}" for group, options in sorted(groups) if options),
        "",
        "Your own config folder (GROUP/OPTION.yaml files beside the packaged ones): vr train --config-dir DIR ...",
        "vr train --cfg job prints the composed config; vr train --hydra-help lists Hydra's flags.",
    ]
    return config_usage("train", "[-m] [KEY=VALUE ...]", details, keys=False)


def run_job(cfg: Any) -> dict[str, Any] | float:
    """The body of one Hydra job: take this job's share of the cores, train, and turn our errors into one clean
    line. Returns the run's summary, or the value of ``optimized_metric`` when the config names one (for a
    sweeper such as Optuna's)."""
    from hydra.core.hydra_config import HydraConfig
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    from ..sweeps import optimized_value, restore_start_method, share_cores
    from ..train import train

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        check_choice("on_error", cfg.get("on_error", "stop"), ON_ERROR)
        check_launch()
        restore_start_method()
        share_cores(cfg)
        summary = train(cfg, run_dir)
        objective = optimized_value(summary["metrics"], cfg.optimized_metric)
    except NothingToResume as err:
        print(err)
        raise SystemExit(0) from None
    except RunInterrupted as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    except (VisionResearchError, MisconfigurationException) as err:
        message = f"error: {job_label(run_dir)}{error_message(err)}"
        print(message, file=sys.stderr)
        if not sweep_continues(cfg):
            raise SystemExit(2) from None
        logging.getLogger(__name__).error(message)  # the job's cli.log keeps why it failed
        return float("nan") if cfg.optimized_metric else {}  # NaN: a failed trial for a sweeper
    if rank_zero_only.rank == 0:
        print(f"run: {run_dir} ({summary['seconds']:.1f} s, torch threads: {summary['threads']})")
        print(metrics_line(summary["metrics"], ("test/", "best/")))
    return summary if objective is None else objective


def job_label(run_dir: Path) -> str:
    """``job N (its folder, named by its overrides): `` for a job of a sweep; nothing for a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    job = HydraConfig.get()
    if job.mode != RunMode.MULTIRUN:
        return ""
    return f"job {job.job.num} ({run_dir}): "


def sweep_continues(cfg: Any) -> bool:
    """Whether the sweep this job belongs to goes on after it failed (``on_error=continue`` in a sweep)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return cfg.get("on_error") == "continue" and HydraConfig.get().mode == RunMode.MULTIRUN


def run(args: list[str]) -> int:
    """Check the overrides (every value of a sweep), then hand the run or sweep to Hydra."""
    if wants_help(args):
        print(usage(args), end="")
        return 0
    import hydra

    import __main__

    from ..resume import resume_arguments

    args = resume_arguments(args)
    if "--hydra-help" not in args:
        validate_overrides(overrides_only(args), extra=search_path(args))
        check_output_folders(overrides_only(args))
    job = hydra.main(config_path=str(config_dir()), config_name="train", version_base="1.3")(run_job)
    sys.argv = [str(TRAIN_SCRIPT), *args]
    spec, __main__.__spec__ = getattr(__main__, "__spec__", None), None
    try:
        job()
    finally:
        __main__.__spec__ = spec
    return 0


TRAIN = Command("train", lambda: config_summary("train"), usage, run)
