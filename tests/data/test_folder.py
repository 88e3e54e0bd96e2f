"""ImageFolderDataModule: both layouts, stratified disjoint splits, class order, batches, clear errors."""

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from vision_research.constants import IMAGENET_MEAN, IMAGENET_STD
from vision_research.data import create_datamodule
from vision_research.data.folder import ImageFileDataset, ImageFolderDataModule, ImageList
from vision_research.data.registry import DATAMODULES
from vision_research.data.transforms import build_classification_transforms
from vision_research.errors import ConfigError, DataError

CLASSES = ("10_ADIPOSE", "01_TUMOR", "02_STROMA")  # sorted: 01_TUMOR, 02_STROMA, 10_ADIPOSE
CONFIG = Path(__file__).parents[2] / "configs" / "data" / "image_folder.yaml"


def write_image(path: Path, value: int, mode: str = "RGB") -> Path:
    """A small image whose pixels encode ``value``; PNG or JPEG by suffix, in ``mode`` (RGB, L, RGBA)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((12, 16, 3), value, np.uint8)
    pixels[:, :8, 0] = 255 - value  # not a flat image
    image = Image.fromarray(pixels)
    image = image.convert(mode) if mode != "RGB" else image
    image.save(path)
    return path


def make_classes(folder: Path, per_class: int, classes=CLASSES) -> None:
    for c, name in enumerate(classes):
        for i in range(per_class):
            suffix = ".jpg" if i % 3 == 0 else ".png"
            write_image(folder / name / f"img_{i:02d}{suffix}", 20 * c + i)


@pytest.fixture
def flat_root(tmp_path):
    root = tmp_path / "tiles"
    make_classes(root, per_class=10)
    write_image(root / "01_TUMOR" / "nested" / "gray.png", 77, mode="L")  # 11 in this class
    write_image(root / "02_STROMA" / "rgba.PNG", 99, mode="RGBA")  # 11 in this class
    (root / "01_TUMOR" / "notes.txt").write_text("not an image")
    (root / "01_TUMOR" / ".hidden.png").write_bytes(b"corrupt, but hidden")
    (root / "02_STROMA" / ".ipynb_checkpoints").mkdir()
    (root / "02_STROMA" / ".ipynb_checkpoints" / "img.png").write_bytes(b"corrupt, but hidden")
    (root / ".cache").mkdir()
    return root


def datamodule(root, **options) -> ImageFolderDataModule:
    options = {
        "image_size": 16,
        "batch_size": 4,
        "num_workers": 0,
        "val_fraction": 0.2,
        "test_fraction": 0.2,
        **options,
    }
    dm = ImageFolderDataModule(str(root), **options)
    dm.setup("fit")
    return dm


def per_class(dm, split: str) -> list[int]:
    return np.bincount(dm.splits[split].labels, minlength=dm.num_classes).tolist()


def test_flat_layout_is_split_stratified_disjoint_and_fixed(flat_root):
    dm = datamodule(flat_root)
    assert dm.class_names == ("01_TUMOR", "02_STROMA", "10_ADIPOSE") and dm.num_classes == 3 and dm.in_chans == 3
    assert dm.split_sizes() == {"train": 20, "val": 6, "test": 6}  # 32 images; round(0.2 * 32) = 6
    assert per_class(dm, "val") == per_class(dm, "test") == [2, 2, 2]
    files = {split: set(images.files) for split, images in dm.splits.items()}
    assert (
        not (files["train"] & files["val"])
        and not (files["train"] & files["test"])
        and not (files["val"] & files["test"])
    )
    everything = set().union(*files.values())
    assert len(everything) == 32 and all(not p.name.startswith(".") and p.suffix != ".txt" for p in everything)
    for split, images in dm.splits.items():  # each file is labelled by its class folder
        for path, label in zip(images.files, images.labels, strict=True):
            assert dm.class_names[label] in path.parts, (split, path)
    again = datamodule(flat_root)
    assert all(again.splits[s].files == dm.splits[s].files for s in ("train", "val", "test"))
    other = datamodule(flat_root, split_seed=1)
    assert other.splits["test"].files != dm.splits["test"].files


def test_split_layout_cuts_only_the_missing_splits(tmp_path):
    make_classes(tmp_path / "train", per_class=10)
    make_classes(tmp_path / "val", per_class=2, classes=("02_STROMA", "10_ADIPOSE"))  # val may lack a class
    dm = datamodule(tmp_path)
    assert dm.class_names == ("01_TUMOR", "02_STROMA", "10_ADIPOSE")
    assert dm.split_sizes() == {"train": 24, "val": 4, "test": 6}
    assert per_class(dm, "val") == [0, 2, 2] and per_class(dm, "test") == [2, 2, 2]
    assert all("val" in p.parts for p in dm.splits["val"].files)

    make_classes(tmp_path / "test", per_class=3)
    dm = datamodule(tmp_path)
    assert dm.split_sizes() == {"train": 30, "val": 4, "test": 9}
    assert per_class(dm, "test") == [3, 3, 3]


def test_batches_are_uint8_until_normalised_on_the_device(flat_root):
    dm = datamodule(flat_root)
    loader = dm.train_dataloader()
    assert len(loader) == 5  # 20 training images, batches of 4
    images, labels = next(iter(loader))
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and labels.shape == (4,)
    x, y = dm.on_after_batch_transfer((images, labels), 0)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert x.dtype == torch.float32 and torch.allclose(x, (images.float() / 255 - mean) / std)
    assert torch.equal(y, labels)

    val = [batch[0] for batch in dm.val_dataloader()]
    assert torch.equal(torch.cat(val), torch.cat([batch[0] for batch in dm.val_dataloader()]))  # deterministic
    custom = datamodule(flat_root, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert torch.allclose(custom.normalise(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)), torch.ones(1, 3, 2, 2))


def test_grayscale_and_rgba_images_load_as_rgb(flat_root):
    dm = datamodule(flat_root)
    files = {p.name: p for images in dm.splits.values() for p in images.files}
    chosen = ImageList([files["gray.png"], files["rgba.PNG"]], np.zeros(2, np.int64))
    dataset = ImageFileDataset(chosen, build_classification_transforms(16, train=False))
    (gray, _), (rgba, _) = dataset[0], dataset[1]
    assert gray.shape == rgba.shape == (3, 16, 16) and gray.dtype == rgba.dtype == torch.uint8
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2]) and not torch.equal(rgba[0], rgba[1])


def test_registered_and_config_keys_are_its_options(flat_root):
    dm = create_datamodule("image_folder", root=str(flat_root), num_workers=0, image_size=16)
    assert isinstance(dm, ImageFolderDataModule) and dm.num_classes == 3
    keys = set(OmegaConf.load(CONFIG)) - {"name"}
    assert keys == set(DATAMODULES.options("image_folder"))
    assert OmegaConf.is_missing(OmegaConf.load(CONFIG), "root")


def test_missing_or_empty_root_states_the_layout(tmp_path):
    with pytest.raises(DataError, match=r"not a folder.*root/<class>/<images>"):
        ImageFolderDataModule(str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"no class folders.*root/train/<class>"):
        datamodule(tmp_path)


def test_empty_class_folder_is_named(flat_root):
    (flat_root / "03_EMPTY").mkdir()
    (flat_root / "03_EMPTY" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match="03_EMPTY: class folder without images"):
        datamodule(flat_root)


def test_a_single_class_folder_is_an_error_naming_the_folder(tmp_path):
    make_classes(tmp_path, per_class=5, classes=("cat",))
    with pytest.raises(DataError) as caught:
        datamodule(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path}: the training images have one class folder (cat); a classifier needs at least 2 classes, "
        "a folder of images for each"
    )


def test_class_missing_from_train_is_named(tmp_path):
    make_classes(tmp_path / "train", per_class=5, classes=("cat", "dog"))
    make_classes(tmp_path / "val", per_class=2, classes=("cat", "cow"))
    with pytest.raises(DataError, match="cow.*not in train"):
        datamodule(tmp_path)


def test_split_folders_without_train_are_an_error(tmp_path):
    make_classes(tmp_path / "val", per_class=2)
    make_classes(tmp_path / "test", per_class=2)
    with pytest.raises(DataError, match="no train/"):
        datamodule(tmp_path)
    make_classes(tmp_path / "train", per_class=5)
    (tmp_path / "test").rename(tmp_path / "valid")
    with pytest.raises(DataError, match=r"\['valid'\] next to train/"):
        datamodule(tmp_path)


def test_corrupt_image_is_named_when_loaded(flat_root):
    bad = flat_root / "01_TUMOR" / "img_05.png"
    bad.write_bytes(b"\x89PNG but truncated")
    dm = datamodule(flat_root, scan_images=False)  # set up with the scan, it is named before any loading
    split = next(s for s, images in dm.splits.items() if bad in images.files)
    dataset = dm._loader(split, train=split == "train").dataset
    with pytest.raises(DataError, match="img_05.png.*cannot read"):
        dataset[dataset.images.files.index(bad)]


def test_bad_options_are_config_errors(flat_root):
    with pytest.raises(ConfigError, match="standard"):
        ImageFolderDataModule(str(flat_root), augment="standart")
    with pytest.raises(ConfigError, match="mean"):
        ImageFolderDataModule(str(flat_root), mean=(0.5,))
    with pytest.raises(ConfigError, match="split"):
        datamodule(flat_root, val_fraction=0.6, test_fraction=0.5)


def test_augment_other_than_a_preset_name_is_a_config_error(tmp_path):
    augment = OmegaConf.create({"augment": {"name": "standard"}}).augment  # as data.augment={name: standard} arrives
    with pytest.raises(ConfigError) as caught:
        ImageFolderDataModule(str(tmp_path), augment=augment)
    assert str(caught.value) == (
        "augment must be a classification preset's name: none, standard, strong; got {'name': 'standard'} "
        "(these presets take no options)"
    )


def test_vr_train_runs_end_to_end_on_an_image_folder(flat_root, tmp_path):
    from hydra import compose, initialize_config_dir

    from vision_research.config_tree import config_dir
    from vision_research.train import train

    overrides = [
        "data=image_folder",
        f"data.root={flat_root}",
        "data.image_size=32",
        "data.num_workers=0",
        "data.batch_size=4",
        "model=lenet5_modern",
        "debug=fast",
        "callbacks.progress_bar=none",
        "trainer.log_every_n_steps=1",
    ]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    summary = train(cfg, tmp_path / "run")
    assert {"test/acc1", "test/loss"} <= set(summary["metrics"])
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
