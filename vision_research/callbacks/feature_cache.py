"""Train a classifier's head on features its frozen backbone computed once (the books' feature-extraction recipe).

With the backbone frozen for the whole run and no augmentation, every epoch would run the same images through the
same frozen layers; running them once and training the classifier on the stored features turns minutes per epoch
into seconds (Géron, *Hands-On Machine Learning*, ch. 14, "Pretrained Models for Transfer Learning"; Michelucci,
*Advanced Applied Deep Learning*, ch. 4, transfer learning with a frozen VGG16 base). The features are the inputs
of the backbone's classifier (``default_cfg["classifier"]``), computed in eval mode: batch norms with their running
statistics, dropout before the classifier off — what a frozen base computes at inference.
"""

from __future__ import annotations

import time

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ..errors import ConfigError
from ..models.base import evaluating

CACHED_SPLITS = ("train", "val")


def classifier_of(backbone: nn.Module) -> nn.Module:
    """The backbone's classifier (``get_classifier()``, timm's contract), the part trained on cached features."""
    classifier = getattr(backbone, "get_classifier", lambda: None)()
    if not isinstance(classifier, nn.Module):
        raise ConfigError(
            f"callbacks.finetune.cache_features trains the backbone's classifier, but {type(backbone).__name__} has "
            "no get_classifier() returning it (models/base.py)"
        )
    return classifier


@torch.no_grad()
def extract_features(
    backbone: nn.Module, dataset: Dataset, datamodule: L.LightningDataModule, device: torch.device
) -> TensorDataset:
    """(classifier inputs [N, D] float32 on the CPU, targets) of every sample of ``dataset`` in its order, the images
    normalised by ``datamodule``; the backbone runs in eval mode and is put back in the modes it was in."""
    classifier = classifier_of(backbone)
    captured: list[torch.Tensor] = []
    handle = classifier.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0].float().cpu()))
    loader = DataLoader(
        dataset,
        batch_size=datamodule.eval_batch_size,
        num_workers=datamodule.num_workers,
        collate_fn=datamodule.collate_fn,
        generator=torch.Generator(),  # not torch's default one: the training run's random stream stays the same
    )
    targets = []
    try:
        with evaluating(backbone):
            for images, labels in loader:
                backbone(datamodule.normalise(images.to(device)))
                targets.append(datamodule.prepare_targets(labels))
    finally:
        handle.remove()
    return TensorDataset(torch.cat(captured), torch.cat(targets))


class FeatureCache(Callback):
    """As fitting is set up, run the frozen backbone once over the train and val splits (without augmentation) and
    let the task train and validate its classifier on the stored classifier inputs; the test after fitting reads the
    images again, through the whole model. The other parameters are frozen (``requires_grad=False``) before the
    optimizer and DDP see them, and released when fitting ends: only the classifier's are trained.

    Needs a classification task (``ImageClassifier``) and a datamodule that does not augment its training images
    (cached features cannot be augmented). With the same seed the head's weights equal those of training on the images
    with the backbone frozen (``BackboneFreeze`` with ``freeze_epochs`` ≥ ``max_epochs``), to float tolerance, for a
    backbone without dropout before its classifier (which training on the images would apply).
    """

    def __init__(self) -> None:
        self._frozen: list[nn.Parameter] = []

    def check(self, pl_module: L.LightningModule, datamodule: L.LightningDataModule) -> None:
        """Refuse a task that is not a classifier and data that augments its training images (``vr train`` calls
        this before the run writes anything; fitting's set-up calls it again)."""
        if not hasattr(pl_module, "inputs_are_features"):
            raise ConfigError(
                f"callbacks.finetune.cache_features trains a classifier's head; {type(pl_module).__name__} is not one"
            )
        if not hasattr(datamodule, "use_cached_features"):
            raise ConfigError("callbacks.finetune.cache_features needs one of the framework's datamodules")
        if datamodule.augments_training:
            raise ConfigError(
                "callbacks.finetune.cache_features computes each image's features once, so it cannot augment them: "
                "set data.augment=none (image folders) or data.augment=null"
            )

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        datamodule = trainer.datamodule
        self.check(pl_module, datamodule)
        # Before the optimizer is built, which reads the training loader (its length): the task's own set-up, which
        # loads the pretrained weights, comes after the callbacks'.
        pl_module.load_pretrained()
        backbone = pl_module.pretrained_module().to(trainer.strategy.root_device)
        cached = {}
        for split in CACHED_SPLITS:
            start = time.perf_counter()
            dataset = datamodule.dataset(split, train=False)
            with trainer.precision_plugin.forward_context():  # the precision the backbone would train in
                cached[split] = extract_features(backbone, dataset, datamodule, trainer.strategy.root_device)
            features = cached[split].tensors[0]
            rank_zero_info(
                f"FeatureCache: {split}: {len(features):,} images → features {tuple(features.shape[1:])} "
                f"in {time.perf_counter() - start:.1f} s"
            )
        datamodule.use_cached_features(cached)
        pl_module.inputs_are_features = True
        trained = {id(p) for p in classifier_of(backbone).parameters()}
        self._frozen = [p for p in pl_module.parameters() if p.requires_grad and id(p) not in trained]
        for parameter in self._frozen:
            parameter.requires_grad_(False)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            trainer.datamodule.use_cached_features({})
            pl_module.inputs_are_features = False
            for parameter in self._frozen:
                parameter.requires_grad_(True)
            self._frozen = []
