"""Choosing backbone stages by stride: heads read only ``feature_info`` (``num_chs``, ``reduction``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError


def select_stages(feature_info: Sequence[dict[str, Any]], strides: Sequence[int]) -> list[int]:
    """Index of the deepest stage at each reduction in ``strides`` (an error names what the backbone has)."""
    indices = []
    for stride in strides:
        matches = [i for i, info in enumerate(feature_info) if info["reduction"] == stride]
        if not matches:
            have = sorted({info["reduction"] for info in feature_info})
            raise ConfigError(f"the backbone has no stage at stride {stride}; this backbone has strides {have}")
        indices.append(matches[-1])
    return indices
