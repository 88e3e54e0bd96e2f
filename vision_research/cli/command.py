"""What a ``vr`` command is, and what the commands share: the argument parser of the tools, the help of the Hydra
commands (read from their config file), and the lines they print.

The rule for arguments: the commands that run a configured task — ``train``, and ``predict`` / ``eval`` /
``export``, which load a trained run — take Hydra overrides ``key=value`` (any key of the config, the run's config
under a checkpoint's); the other commands, tools over files and model names, take ``--flags``. A name is spelled the
same in both: the key ``batch_size`` is the flag ``--batch-size``, ``ckpt_path`` is ``--ckpt-path``, ``output`` is
``--output``. Nothing here imports torch: ``vr <command> --help`` answers at once.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..config_tree import config_dir
from ..errors import ConfigError


@dataclass(frozen=True)
class Command:
    """A ``vr`` command: ``summary()`` is its line in ``vr --help``, ``usage()`` its ``vr NAME --help``, and
    ``run(args)`` does its work and returns the exit code."""

    name: str
    summary: Callable[[], str]
    usage: Callable[[], str]
    run: Callable[[list[str]], int]


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a mistake as one ``ConfigError`` line, like every other command-line mistake."""

    def error(self, message: str) -> None:
        raise ConfigError(f"{self.prog}: {message} (see {self.prog} --help)")


class RenamedFlag(argparse.Action):
    """A flag's old spelling, still accepted, with a note on stderr naming the new one (hidden from --help)."""

    def __init__(self, option_strings: list[str], dest: str, new: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)
        self.new = new

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: str | None = None) -> None:
        print(f"{parser.prog}: note: {option} is now spelled {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def parser_command(
    name: str, build: Callable[[], ArgumentParser], work: Callable[[argparse.Namespace], int]
) -> Command:
    """A command whose arguments ``build()``'s parser reads (``--help`` is its help) and which ``work`` does."""

    def run(args: list[str]) -> int:
        return work(build().parse_args(args))

    return Command(name, lambda: first_sentence(build().description or ""), lambda: build().format_help(), run)


def new_parser(command: str, description: str) -> ArgumentParser:
    """The parser of ``vr COMMAND``; ``description``'s first sentence is its line in ``vr --help``."""
    return ArgumentParser(prog=f"vr {command}", description=description)


@dataclass(frozen=True)
class ConfigKey:
    """A top-level key of a command's config file, with its default and the comment above it."""

    name: str
    default: str
    comment: str


def read_config_help(config_name: str) -> tuple[list[str], list[ConfigKey]]:
    """The header comment of ``configs/<config_name>.yaml`` (its lines) and its own top-level keys, each with the
    comment lines above it: the help of a Hydra command, kept in its config file beside the values."""
    lines = (config_dir() / f"{config_name}.yaml").read_text().splitlines()
    count = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    header = [re.sub(r"^# ?", "", line).rstrip() for line in lines[:count]]
    keys: list[ConfigKey] = []
    comment: list[str] = []
    for line in lines[len(header) :]:
        if line.startswith("#"):
            comment.append(line.lstrip("#").strip())
            continue
        key = re.match(r"^(\w+):\s*([^#]*?)\s*(?:#.*)?$", line)
        if key and key.group(1) not in ("defaults", "hydra"):
            keys.append(ConfigKey(key.group(1), key.group(2) or "...", " ".join(comment)))
        comment = []
    return header, keys


def first_sentence(text: str) -> str:
    """``text`` up to the end of its first sentence, on one line, without a leading ``vr <command>:``."""
    text = re.sub(r"^`?vr \w+`?:\s*", "", " ".join(text.split()))
    return re.split(r"(?<=\.)\s+(?=[A-Z])", text, maxsplit=1)[0]


def config_summary(config_name: str) -> str:
    """The first sentence of ``configs/<config_name>.yaml``'s header."""
    header, _ = read_config_help(config_name)
    return first_sentence(" ".join(header))


def config_usage(command: str, synopsis: str = "", details: Sequence[str] = (), keys: bool = True) -> str:
    """``vr COMMAND --help`` of a Hydra command: ``usage: vr COMMAND SYNOPSIS`` (default: its required keys), the
    header of ``configs/COMMAND.yaml``, its keys with their defaults and comments (``keys``), then ``details``."""
    header, own = read_config_help(command)
    required = " ".join(f"{k.name}=..." for k in own if k.default == "???")
    lines = [f"usage: vr {command} {synopsis or (required + ' [KEY=VALUE ...]').strip()}", "", *header, ""]
    if keys and own:
        width = max(len(k.name) + len(k.default) + 1 for k in own)
        lines.append(f"keys of configs/{command}.yaml (KEY=DEFAULT; ??? is required):")
        lines += [f"  {f'{k.name}={k.default}':<{width}}  {k.comment}".rstrip() for k in own]
    return "\n".join([*lines, *details]).rstrip() + "\n"


def wants_help(args: Sequence[str]) -> bool:
    """``-h`` or ``--help`` among ``args``: print the usage before doing (or importing) anything else."""
    return any(arg in ("-h", "--help") for arg in args)


def error_message(err: BaseException) -> str:
    """The message of one of our errors, without the worker traceback a DataLoader worker process wraps it in
    ("Caught DataError in DataLoader worker process 0. Original Traceback ...")."""
    message = str(err)
    if "Original Traceback" in message:
        last = [line for line in message.splitlines() if line.strip()][-1]
        message = re.sub(rf"^[\w.]*\b{type(err).__name__}: ", "", last)
    return message


def metrics_line(metrics: dict[str, float], prefixes: tuple[str, ...], signed: bool = False) -> str:
    """The figures whose names start with ``prefixes``, on one line (``signed``: with their sign, for changes);
    per-class ones (test/iou_<class>) stay in metrics.json and TensorBoard."""
    shown = {k: v for k, v in metrics.items() if k.startswith(prefixes) and "/iou_" not in k}
    style = "+.4f" if signed else ".4f"
    return "  " + "  ".join(f"{k} {v:{style}}" for k, v in sorted(shown.items()))
