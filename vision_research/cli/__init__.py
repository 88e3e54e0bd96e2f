"""The ``vr`` command: ``vr <command> [arguments]``, one module per group of commands.

:mod:`.train` (``train``), :mod:`.checkpoint` (``predict``, ``eval``, ``export``: a trained run's checkpoint),
:mod:`.data` (``convert``, ``data``), :mod:`.measure` (``models``, ``benchmark``) and :mod:`.analysis`
(``compare``, ``inspect``, ``dream``, ``style``); :mod:`.overrides` checks Hydra overrides, :mod:`.command` holds
what the commands share (the argument rule is in its docstring). ``vr --help`` lists each command with the first
sentence of its own help. Mistakes end in one ``error:`` line that names what was wrong and what was probably
meant — never a Hydra or Lightning traceback; nothing heavy is imported before a command runs.
"""

from __future__ import annotations

import sys
import warnings

from ..errors import ConfigError, VisionResearchError, close_matches
from ..paths import path_safe
from .analysis import COMPARE, DREAM, INSPECT, STYLE
from .checkpoint import EVAL, EXPORT, PREDICT
from .command import Command, error_message
from .data import CONVERT, DATA
from .measure import BENCHMARK, MODELS
from .train import TRAIN


def register_resolvers() -> None:
    """``${path_safe:...}`` for the run-directory names in configs/train.yaml (``timm:resnet18``, ``root=/a/b``)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("path_safe"):
        OmegaConf.register_new_resolver("path_safe", path_safe)


register_resolvers()

# Lightning 2.6 calls a torch pytree API that torch 2.14 deprecates; the warning is not the user's concern.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
# bf16-mixed is the default precision on this kind of CPU; Lightning's model summary then says it sizes in fp32.
warnings.filterwarnings("ignore", message="Precision bf16-mixed is not supported by the model summary")
# A new run never starts in a directory holding checkpoints (run_dir.check_fresh_run_dir); a resumed one does.
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")

COMMANDS: dict[str, Command] = {
    command.name: command
    for command in (TRAIN, MODELS, PREDICT, EVAL, EXPORT, CONVERT, DATA, BENCHMARK, COMPARE, INSPECT, DREAM, STYLE)
}


def usage() -> str:
    """``vr --help``: every command with the first sentence of its own help."""
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {command.summary()}" for name, command in COMMANDS.items()]
    return "\n".join(
        [
            "usage: vr <command> [arguments]",
            "",
            "commands:",
            *lines,
            "",
            "vr <command> --help says more. train, predict, eval and export take Hydra overrides KEY=VALUE (any key of",
            "the config; a checkpoint's run config lies under predict, eval and export); the other commands take",
            "--flags, named as the keys are (batch_size is --batch-size, ckpt_path --ckpt-path, output --output).",
            "Run directories go to runs/ (TensorBoard: tensorboard --logdir runs).",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command, rest = args[0], args[1:]
    try:
        if command not in COMMANDS:
            matches = close_matches(command, COMMANDS)
            raise ConfigError(
                f"unknown command '{command}'."
                + (f" Did you mean: {', '.join(matches)}?" if matches else f" Commands: {', '.join(COMMANDS)}")
            )
        return COMMANDS[command].run(rest)
    except VisionResearchError as err:
        print(f"error: {error_message(err)}", file=sys.stderr)
        return 2
