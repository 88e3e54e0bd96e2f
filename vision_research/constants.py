"""Per-channel normalisation statistics (mean / std of [0, 1] pixels) and the one rule that fits them to an input's
channel count, shared by the models' ``default_cfg``, the datamodules, the tasks and ``vr predict``."""

from __future__ import annotations

from collections.abc import Sequence

from .errors import ConfigError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
# The official training sets' per-pixel statistics.
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)
# Inputs scaled to [-1, 1], as Keras' ``xception.preprocess_input`` and timm's Inception statistics.
INCEPTION_MEAN, INCEPTION_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)

DATASET_STATS = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
    "mnist": (MNIST_MEAN, MNIST_STD),
    "fashion_mnist": (FASHION_MNIST_MEAN, FASHION_MNIST_STD),
    "inception": (INCEPTION_MEAN, INCEPTION_STD),
}

Stats = tuple[tuple[float, ...], tuple[float, ...]]


def dataset_stats(name: str, in_chans: int) -> Stats:
    """A named data set's (mean, std) for an input of ``in_chans`` channels: as they are when the channel counts
    agree, else their channel averages repeated ``in_chans`` times (ImageNet's for a grey input: 0.449, 0.226)."""
    mean, std = DATASET_STATS[name]
    if len(mean) == in_chans:
        return mean, std
    return (sum(mean) / len(mean),) * in_chans, (sum(std) / len(std),) * in_chans


def check_channel_stats(mean: Sequence[float], std: Sequence[float], in_chans: int, where: str = "data") -> Stats:
    """Given (mean, std) values for an input of ``in_chans`` channels: one value per channel, every std positive.
    Anything else is a ``ConfigError`` naming ``<where>.mean`` / ``<where>.std``."""
    mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    for key, values in (("mean", mean), ("std", std)):
        if len(values) != in_chans:
            raise ConfigError(
                f"{where}.{key} has {len(values)} values for {in_chans}-channel images; give one per channel"
            )
    if min(std) <= 0:
        raise ConfigError(f"{where}.std must be positive; got {list(std)}")
    return mean, std
