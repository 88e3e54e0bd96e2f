"""Freeze a pretrained backbone, train the new head, then fine-tune the backbone (all of it, or its later stages).

Features learnt on a large data set transfer, the early ones (edges, colours, textures) better than the late,
task-specific ones; fine-tuning the transferred layers helps, and a randomly initialised head should not send
large gradients through them first (Yosinski et al. 2014, "How transferable are features in deep neural
networks?"). Géron's recipe (*Hands-On Machine Learning*, ch. 14, "Pretrained Models for Transfer Learning"):
freeze the base, train the head for a few epochs, then unfreeze the base (or its top layers) and go on at a lower
learning rate — ``optimizer.backbone_lr_mult`` / ``layer_decay`` (:mod:`vision_research.optim`).
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import ConfigError
from ..optim import backbone_layers, backbone_stages, layer_assigner


class BackboneFreeze(Callback):
    """Freeze the task's backbone (``pl_module.pretrained_module()``) until epoch ``freeze_epochs``.

    Until then the backbone's parameters — all but its own classifier (``default_cfg["classifier"]``), which for a
    classifier *is* the head — get ``requires_grad=False``, and with ``freeze_batchnorm`` its batch-norm layers stay
    in eval mode while training (their running statistics do not move; the frozen features keep the statistics
    they were learnt with). From epoch ``freeze_epochs`` the whole backbone trains, or with ``unfreeze_from=k``
    only its stages k, k+1, … (:func:`vision_research.optim.backbone_layers`): the stem and stages before k stay
    frozen, batch norms included, to the end. Parameters frozen before fitting (``freeze_unused_by_features``)
    stay frozen; what this callback froze is released when fitting ends.

    Freezing starts when training starts, after the optimizer is built, so that the optimizer holds the frozen
    parameters and unfreezing needs no new parameter group (torch's optimizers skip a parameter without a
    gradient: no step, no weight decay, no momentum). The phase follows ``trainer.current_epoch``, which a resume
    restores: resumed at an epoch ≥ ``freeze_epochs``, nothing is frozen (but the stages before ``unfreeze_from``).
    Under DDP, parameters that stop needing gradients after the model is wrapped need
    ``trainer.strategy=ddp_find_unused_parameters_true``.
    """

    def __init__(self, freeze_epochs: int, unfreeze_from: int | None = None, freeze_batchnorm: bool = True) -> None:
        if freeze_epochs < 0:
            raise ConfigError(f"callbacks.finetune.freeze_epochs must be ≥ 0; got {freeze_epochs}")
        if unfreeze_from is not None and unfreeze_from < 0:
            raise ConfigError(
                f"callbacks.finetune.unfreeze_from must be a stage index ≥ 0 or null; got {unfreeze_from}"
            )
        self.freeze_epochs, self.unfreeze_from, self.freeze_batchnorm = freeze_epochs, unfreeze_from, freeze_batchnorm
        self._layers: dict[str, list[nn.Parameter]] = {}
        self._norms: list[tuple[str, _BatchNorm]] = []
        self._frozen: dict[int, nn.Parameter] = {}  # what this callback froze, by id
        self._eval_norms: list[_BatchNorm] = []
        self._phase: tuple[str, ...] | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        from lightning.pytorch.strategies import DDPStrategy

        strategy = trainer.strategy
        find_unused = getattr(strategy, "_ddp_kwargs", {}).get("find_unused_parameters", False)
        if stage == "fit" and isinstance(strategy, DDPStrategy) and not find_unused:
            raise ConfigError(
                "callbacks.finetune freezes parameters after DDP has wrapped the model: "
                "set trainer.strategy=ddp_find_unused_parameters_true"
            )

    def check(self, pl_module: L.LightningModule, datamodule: L.LightningDataModule | None = None) -> None:
        """Refuse an ``unfreeze_from`` beyond the backbone's stages (``vr train`` calls this before the run writes
        anything; training's start calls it again)."""
        backbone = pl_module.pretrained_module()
        stages = backbone_stages(backbone)
        if self.unfreeze_from is not None and self.unfreeze_from >= len(stages):
            raise ConfigError(
                f"callbacks.finetune.unfreeze_from={self.unfreeze_from}, but {type(backbone).__name__} has "
                f"{len(stages)} stages (0 … {len(stages) - 1})"
            )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(pl_module)
        backbone = pl_module.pretrained_module()
        stages = backbone_stages(backbone)
        layers = backbone_layers(backbone, stages)
        layers.pop("head", None)
        self._layers = {key: [p for _, p in named] for key, named in layers.items()}
        layer_of = layer_assigner(backbone, stages)
        self._norms = [
            (layer_of(name), module)
            for name, module in backbone.named_modules()
            if isinstance(module, _BatchNorm) and layer_of(name) != "head"
        ]
        self._phase = None
        self._enter_phase(trainer.current_epoch, pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._enter_phase(trainer.current_epoch, pl_module)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._hold_norms()  # after a validation whose hooks put the whole model back in training mode

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._set_frozen(set(), training=pl_module.training)
            self._phase = None

    def frozen_layers(self, epoch: int) -> set[str]:
        """The backbone's layers (``stem``, ``stage<i>``, ``all``) kept frozen during ``epoch``."""
        if epoch < self.freeze_epochs:
            return set(self._layers)
        if self.unfreeze_from is None:
            return set()
        return {"stem", *(f"stage{i}" for i in range(self.unfreeze_from))} & set(self._layers)

    def _enter_phase(self, epoch: int, pl_module: L.LightningModule) -> None:
        layers = self.frozen_layers(epoch)
        phase = tuple(key for key in self._layers if key in layers)  # in forward order
        if phase != self._phase:
            self._set_frozen(layers, training=pl_module.training)
            if self._phase is not None or layers:
                what = "the whole backbone" if layers == set(self._layers) else ", ".join(phase) or "nothing"
                rank_zero_info(f"BackboneFreeze: epoch {epoch}: frozen {what} ({len(self._frozen)} tensors)")
            self._phase = phase
        self._hold_norms()

    def _set_frozen(self, layers: set[str], training: bool) -> None:
        wanted = {id(p): p for key in layers for p in self._layers.get(key, [])}
        for key in [key for key in self._frozen if key not in wanted]:
            self._frozen.pop(key).requires_grad_(True)
        for key, parameter in wanted.items():
            if key not in self._frozen and parameter.requires_grad:  # already frozen by others: not ours
                parameter.requires_grad_(False)
                self._frozen[key] = parameter
        norms = [module for layer, module in self._norms if layer in layers] if self.freeze_batchnorm else []
        kept = {id(module) for module in norms}
        for module in self._eval_norms:
            if id(module) not in kept:
                module.train(training)
        self._eval_norms = norms

    def _hold_norms(self) -> None:
        for module in self._eval_norms:
            if module.training:
                module.eval()
