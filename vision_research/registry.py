"""A name → builder table with helpful errors; models, datamodules and tasks each keep one."""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from .errors import ConfigError, close_matches, unknown_name_error

T = TypeVar("T", bound=Callable[..., Any])


def keyword_defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    """The parameters of ``fn`` (a function or a class) that have a default, with it: its options, read from the
    code rather than kept by hand beside it."""
    return {
        p.name: p.default
        for p in inspect.signature(fn).parameters.values()
        if p.default is not p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def accepted_options(builder: Callable[..., Any]) -> dict[str, Any]:
    """The keyword options ``builder`` (a function or a class) accepts, with their defaults
    (``inspect.Parameter.empty`` if none). A class whose ``__init__`` passes ``**options`` on to its base accepts
    the base's options too (the tasks declare their shared options once, in ``VisionTask``)."""
    signatures = (
        [inspect.signature(c.__init__) for c in builder.__mro__ if "__init__" in c.__dict__]
        if inspect.isclass(builder)
        else [inspect.signature(builder)]
    )
    options: dict[str, Any] = {}
    for signature in signatures:
        params = list(signature.parameters.values())
        for p in params:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                options.setdefault(p.name, p.default)
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    options.pop("self", None)
    return options


class Registry(Generic[T]):
    """Builders registered by name; unknown names and unknown options raise ``ConfigError`` with hints."""

    def __init__(self, kind: str, hint: str = "", load: Callable[[], object] | None = None) -> None:
        """``load``, if given, registers the built-in entries: it runs once, before the first lookup, so that
        importing the registry stays cheap and registering a user's own entry needs none of the built-in ones."""
        self.kind, self.hint = kind, hint
        self._entries: dict[str, T] = {}
        self._load = load

    def _loaded(self) -> dict[str, T]:
        if self._load is not None:
            load, self._load = self._load, None  # first: the modules it imports may register (and look up) too
            load()
        return self._entries

    def register(self, builder: T | None = None, *, name: str | None = None) -> Any:
        """Decorator: ``@registry.register`` (the builder's ``__name__``) or ``@registry.register(name=...)``."""

        def add(fn: T) -> T:
            key = name or fn.__name__
            if key in self._entries and self._entries[key] is not fn:
                raise ConfigError(f"{self.kind} '{key}' is registered twice ({self._entries[key]} and {fn})")
            self._entries[key] = fn
            return fn

        return add(builder) if builder is not None else add

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._loaded() if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: str) -> bool:
        return name in self._loaded()

    def get(self, name: str) -> T:
        entries = self._loaded()
        if name not in entries:
            raise unknown_name_error(self.kind, name, entries, hint=self.hint)
        return entries[name]

    def options(self, name: str) -> dict[str, Any]:
        """The keyword options a builder accepts, with their defaults (``inspect.Parameter.empty`` if none)."""
        return accepted_options(self.get(name))

    def check_options(self, name: str, options: Mapping[str, Any]) -> None:
        """Raise a ``ConfigError`` naming each option ``name`` does not accept, with close matches."""
        allowed = self.options(name)
        unknown = [k for k in options if k not in allowed]
        if not unknown:
            return
        hints = []
        for key in unknown:
            matches = close_matches(key, allowed)
            hints.append(f"'{key}'" + (f" (did you mean {', '.join(matches)}?)" if matches else ""))
        raise ConfigError(f"{self.kind} '{name}' has no option {'; '.join(hints)}. Its options: {', '.join(allowed)}")

    def build(self, name: str, **options: Any) -> Any:
        self.check_options(name, options)
        return self.get(name)(**options)
