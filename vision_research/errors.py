"""Errors raised for user mistakes: they name the object at fault and suggest what was meant.

The CLI prints these as one clean message (no traceback); library users catch them by type.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence


class VisionResearchError(Exception):
    """Base class of every error the framework raises for bad input or configuration."""


class ConfigError(VisionResearchError, ValueError):
    """A configuration value, name or key is wrong (unknown model, unknown option, bad range)."""


class DataError(VisionResearchError, ValueError):
    """Data on disk is missing or malformed; the message names the file and what is wrong."""


class TrainingDiverged(VisionResearchError):
    """A training loss became non-finite (NaN or inf); the message names the step, the loss terms and what to try."""


class RunDirectoryInUse(ConfigError):
    """The run directory already holds a previous run's checkpoints, metrics or TensorBoard events, or another process
    is writing it."""


class NothingToResume(VisionResearchError):
    """``resume=`` of a run that has finished, with nothing asked beyond what it did: not a failure (exit code 0)."""


class RunInterrupted(VisionResearchError):
    """A signal (SIGTERM, SIGINT) stopped the run; its last checkpoint is kept for ``resume=``."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's code for a process ended by ``signum``: 128 + the signal's number (SIGTERM 143, SIGINT 130)."""
        return 128 + self.signum


def close_matches(name: str, choices: Iterable[str], n: int = 5) -> list[str]:
    """Up to ``n`` entries of ``choices`` that look like ``name`` (case-insensitive), best first."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    # Substring hits ("resnet" -> "resnet18") are useful even when the edit distance is large.
    hits += [c.lower() for c in choices if name.lower() in c.lower() and c.lower() not in hits]
    return [lowered[h] for h in hits[:n]]


def unknown_name_error(kind: str, name: str, choices: Iterable[str], hint: str = "") -> ConfigError:
    """A ``ConfigError`` for an unknown ``kind`` (model, datamodule, ...) listing close matches."""
    choices = sorted(choices)
    matches = close_matches(name, choices)
    if matches:
        msg = f"unknown {kind} '{name}'. Did you mean: {', '.join(matches)}?"
    else:
        shown = ", ".join(choices[:20]) + (", ..." if len(choices) > 20 else "")
        msg = f"unknown {kind} '{name}'. Known: {shown}"
    if hint:
        msg += f" {hint}"
    return ConfigError(msg)


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): the reason in a one-line error
    that wraps a library's long explanation."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# What an option's value may be, for check_value: the words of the error, and the test.
VALUE_KINDS = {
    "a positive integer": lambda v: _integer(v) and v >= 1,
    "an integer or null": lambda v: v is None or _integer(v),
    "a number or null": lambda v: v is None or _integer(v) or isinstance(v, float),
    "true or false": lambda v: isinstance(v, bool),
}


def check_value(key: str, value: object, kind: str) -> object:
    """``value`` if it is ``kind`` (a key of ``VALUE_KINDS``), else a ``ConfigError`` naming ``key``: an option of a
    command, from its command line or a Python call."""
    if not VALUE_KINDS[kind](value):
        raise ConfigError(f"{key} must be {kind}; got {value!r}")
    return value


def check_choice(key: str, value: object, choices: Sequence[str]) -> object:
    """``value`` if it is one of ``choices``, else a ``ConfigError`` naming ``key`` and the choices."""
    if value not in choices:
        raise ConfigError(f"{key}={value!r}: choose {', '.join(choices[:-1])} or {choices[-1]}")
    return value
