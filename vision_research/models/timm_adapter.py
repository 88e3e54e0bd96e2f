"""``timm:<name>``: any timm model behind the framework's backbone contract.

timm already defines the vocabulary we use (``feature_info`` with ``num_chs``/``reduction``/``module``,
``reset_classifier``, ``pretrained_cfg``); the adapter maps ``forward_features`` to timm's
``forward_intermediates`` (one map per stage, finest first) and never downloads weights.
"""

from __future__ import annotations

from typing import Any

import torch

from ..constants import IMAGENET_MEAN, IMAGENET_STD
from ..errors import ConfigError, unknown_name_error
from .base import Backbone, feature_info


class TimmBackbone(Backbone):
    """Wraps ``timm.create_model(name, pretrained=False, ...)``; ``self.model`` is the timm module."""

    def __init__(self, name: str, num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> None:
        super().__init__()
        import timm

        if not timm.is_model(name):
            raise unknown_name_error("timm model", name, timm.list_models())
        try:
            self.model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)
        except TypeError as err:
            raise ConfigError(f"timm model '{name}' rejected its options {sorted(kwargs)}: {err}") from err
        if not hasattr(self.model, "forward_intermediates"):
            raise ConfigError(f"timm model '{name}' has no forward_intermediates(); it cannot serve as a backbone")
        self.name, self.num_classes = name, num_classes
        self.feature_info = [feature_info(f["num_chs"], f["reduction"], f["module"]) for f in self.model.feature_info]
        cfg = self.model.pretrained_cfg
        self.default_cfg = {
            "input_size": (in_chans, *tuple(cfg.get("input_size", (3, 224, 224)))[1:]),
            "mean": tuple(cfg.get("mean", IMAGENET_MEAN)),
            "std": tuple(cfg.get("std", IMAGENET_STD)),
            "num_classes": num_classes,
            "first_conv": f"model.{cfg['first_conv']}" if cfg.get("first_conv") else None,
            "classifier": f"model.{cfg['classifier']}" if cfg.get("classifier") else None,
        }

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model.forward_intermediates(x, intermediates_only=True)

    def forward_head(self, features: list[torch.Tensor]) -> torch.Tensor:
        """The timm head on the last stage map (exact for conv nets, whose last stage is the final map)."""
        return self.model.forward_head(features[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.model.reset_classifier(num_classes)
        self.num_classes = self.default_cfg["num_classes"] = num_classes
