"""Lazy re-exports for a package's ``__init__`` (PEP 562): the names a package offers are imported from their
modules on first use, so that importing the package — as ``vr <command> --help`` does to list its choices — costs
nothing until one of them is used."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, Sequence[str]]) -> tuple[Callable[[str], Any], Callable[[], list]]:
    """``(__getattr__, __dir__)`` for ``package``, whose ``exports`` map a module (relative, ``.backends``) to the
    names it offers through the package; a name is imported once, then held by the package like any attribute."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *where})

    return __getattr__, __dir__
