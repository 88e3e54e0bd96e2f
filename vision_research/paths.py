"""File-system names made from config values and labels."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .errors import ConfigError

MAX_NAME_LENGTH = 160  # file systems allow 255 bytes per name; a sweep over many overrides can exceed that


def path_safe(text: str) -> str:
    """A file or folder name from ``text``: path separators, ':' and spaces become '-' (``timm:resnet18``,
    ``data.root=/a/b``, group labels); a name longer than 160 characters is cut and ends in a hash of the whole."""
    name = re.sub(r"[^\w.=,+-]+", "-", str(text)).strip("-")
    if len(name) <= MAX_NAME_LENGTH:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    return f"{name[: MAX_NAME_LENGTH - 11]}-{digest}"


def data_cache_dir() -> Path:
    """Where generated and cached data go: ``$VR_DATA_DIR``, default ``~/.cache/vision_research``."""
    return Path(os.environ.get("VR_DATA_DIR", "~/.cache/vision_research")).expanduser()


def check_can_create(folder: str | Path, key: str) -> None:
    """Raise ``ConfigError`` unless ``folder`` exists as a writable folder or can be made: its nearest existing
    ancestor must be a folder this process may write into (``key`` names the setting it came from)."""
    existing = Path(folder).expanduser().absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{key}={folder}: cannot create this folder, {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={folder}: cannot write into {existing} (permission denied); choose another {key}")
