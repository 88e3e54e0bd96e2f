"""The packaged Hydra config tree and helpers over configs and overrides (their keys, the values still missing)."""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError

# The config tree is packaged with the code (configs/ at the top of the source tree links here).
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def config_dir() -> Path:
    if not (CONFIG_DIR / "train.yaml").is_file():
        raise ConfigError(f"the config tree was not found at {CONFIG_DIR}; reinstall vision_research")
    return CONFIG_DIR


def flat_keys(node: object, prefix: str = "") -> list[str]:
    """Every key of a DictConfig, nested ones dotted (``splits``, ``splits.train``)."""
    from omegaconf import DictConfig

    keys = []
    if isinstance(node, DictConfig):
        for key in node:
            path = f"{prefix}{key}"
            keys.append(path)
            keys.extend(flat_keys(node._get_node(key), path + "."))
    return keys


def missing_keys(node: object, prefix: str = "") -> list[str]:
    """The keys whose value is still ``???``, nested ones dotted; interpolations are not resolved."""
    from omegaconf import DictConfig

    missing = []
    if isinstance(node, DictConfig):
        for key in node:
            path, child = f"{prefix}{key}", node._get_node(key)
            missing.extend([path] if child._is_missing() else missing_keys(child, path + "."))
    return missing


def override_key(override: str) -> str:
    """The key of a Hydra override (``+a.b=1`` → ``a.b``), without its ``+`` / ``++`` / ``~`` prefix."""
    return override.split("=", 1)[0].lstrip("+~")


def quoted_value(text: str) -> str:
    """``text`` as a single-quoted Hydra override value: a path holding ``=``, ``,`` or brackets (a sweep's run
    folders are named ``key=value,key=value``) read as itself."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
