"""Bad image files are one-line errors naming them, at set-up when a header read can tell.

The datamodules that read image files (image_folder, COCO / VOC / YOLO / shapes) read every image header when set
up: missing, empty, unreadable and oversized files come back together in one ``DataError``. A JPEG cut short
passes that scan and is named when a sample decodes it. ``max_image_pixels`` replaces PIL's decompression-bomb
limit per datamodule without changing PIL's global. Out-of-range class maps, 1×1 images under the strong
preset, weights files that are not state dicts and truncated checkpoints given to ``vr predict`` are covered too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image, ImageFile

from tests.core.test_images_and_predict import trained_run
from tests.data.test_annotations import DOG, OPTIONS, _box, _coco, _image, _png, _yolo
from vision_research.cli import main
from vision_research.data.coco import CocoDataModule
from vision_research.data.folder import ImageFolderDataModule
from vision_research.data.formats import save_mask_png
from vision_research.data.images import scan_images
from vision_research.data.shapes import ShapesDataModule, generate_shapes
from vision_research.data.voc import VOCDataModule
from vision_research.data.yolo import YoloDataModule
from vision_research.errors import ConfigError, DataError
from vision_research.models import create_model, load_pretrained
from vision_research.predict import predict
from vision_research.tasks import SemanticSegmenter

IMAGES = ("a.png", "b.png", "c.png", "d.png", "e.jpg")  # 32×24 each, as _png writes them


def folder_data(root: Path, **options) -> tuple[ImageFolderDataModule, Path]:
    """root/{train,val,test}/{cat,dog}/ holding IMAGES each; the datamodule and its folder root/train/cat."""
    for split in ("train", "val", "test"):
        for name in IMAGES:
            _png(root / split / "cat" / name)
            _png(root / split / "dog" / name)
    options = {"image_size": 32, "batch_size": 2, "num_workers": 0, **options}
    return ImageFolderDataModule(str(root), **options), root / "train" / "cat"


def coco_data(root: Path, **options) -> tuple[CocoDataModule, Path]:
    """IMAGES in root/images/, one box each, in one COCO file read as the train and the val split."""
    boxes = [_box(i, i, [2, 2, 12, 10]) for i in range(1, len(IMAGES) + 1)]
    _coco(root, [_image(i, name) for i, name in enumerate(IMAGES, 1)], boxes, DOG)
    data = CocoDataModule(str(root), splits={"train": "train", "val": "train"}, **{**OPTIONS, **options})
    return data, root / "images"


def yolo_data(root: Path, **options) -> tuple[YoloDataModule, Path]:
    """IMAGES in root/images/train/ with a label each (and a val image); the datamodule and images/train."""
    _yolo(root, {Path(name).stem: "0 0.5 0.5 0.2 0.2\n" for name in IMAGES})
    return YoloDataModule(str(root), **{**OPTIONS, **options}), root / "images" / "train"


def sample(data: L.LightningDataModule, path: Path) -> tuple:
    """The training sample ``data`` reads from the image file ``path``."""
    if isinstance(data, ImageFolderDataModule):
        dataset = data.train_dataloader().dataset
        return dataset[dataset.images.files.index(path)]
    dataset = data.dataset("train")
    return dataset[[dataset.annotations.image_path(r) for r in dataset.annotations.images].index(path)]


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


# ------------------------------------------------------------------------------------------- the set-up scan


@pytest.mark.parametrize(
    ("make", "scanned", "skippable"),
    [(folder_data, 20, True), (coco_data, 5, True), (yolo_data, 5, False)],
    ids=["image_folder", "coco", "yolo"],
)
def test_setup_names_every_unreadable_image_in_one_error(tmp_path, make, scanned, skippable):
    data, folder = make(tmp_path)
    (folder / "a.png").write_bytes(b"")
    (folder / "b.png").write_text("not an image")
    (folder / "c.png").write_bytes((folder / "d.png").read_bytes()[:20])  # the header cut short
    with pytest.raises(DataError) as err:
        data.setup("fit")
    message = one_line(err)
    assert f"3 of {scanned} images in " in message
    assert "a.png: empty file (0 bytes)" in message
    assert "b.png: cannot read the image (no image format recognised)" in message
    assert "c.png: cannot read the image (" in message
    assert ("set data.scan_images=false to skip this check" in message) == skippable  # YOLO needs every size


def test_scan_names_the_first_five_files_and_counts_the_rest(tmp_path):
    paths = [tmp_path / f"{n}.png" for n in range(7)] + [tmp_path / "sub" / "ok.png"]
    _png(paths[-1])
    with pytest.raises(DataError) as err:
        scan_images(paths)
    message = one_line(err)
    assert message.startswith(f"7 of 8 images in {tmp_path} cannot be read: 0.png: image file not found; ")
    assert "4.png: image file not found; and 2 more — fix or remove them" in message and "5.png" not in message


@pytest.mark.parametrize("make", [folder_data, coco_data], ids=["image_folder", "coco"])
def test_a_jpeg_cut_short_passes_the_scan_and_is_named_when_its_sample_is_read(tmp_path, make):
    data, folder = make(tmp_path)
    noise = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "e.jpg", quality=95)
    whole = (folder / "e.jpg").read_bytes()
    (folder / "e.jpg").write_bytes(whole[: len(whole) * 2 // 3])
    data.setup("fit")  # the header is whole
    with pytest.raises(DataError) as err:
        sample(data, folder / "e.jpg")
    assert f"{folder / 'e.jpg'}: cannot read the image (image file is truncated" in one_line(err)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# ------------------------------------------------------------------------------------------ decompression bombs


@pytest.mark.parametrize("make", [folder_data, coco_data], ids=["image_folder", "coco"])
def test_max_image_pixels_replaces_pils_limit_at_setup_and_when_loading(tmp_path, monkeypatch, make):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # PIL alone refuses these 768-pixel images (> 2 × 300)
    refusing, folder = make(tmp_path, max_image_pixels=700)
    with pytest.raises(DataError) as err:
        refusing.setup("fit")
    assert "a.png: 32×24 = 768 pixels, above data.max_image_pixels=700 (a guard against decompression" in one_line(err)
    unscanned, _ = make(tmp_path, max_image_pixels=700, scan_images=False)
    unscanned.setup("fit")
    with pytest.raises(DataError) as err:
        sample(unscanned, folder / "a.png")
    assert one_line(err).startswith(f"{folder / 'a.png'}: 32×24 = 768 pixels, above data.max_image_pixels=700")
    for limit in (800, None):
        data, _ = make(tmp_path, max_image_pixels=limit)
        data.setup("fit")
        image, _ = sample(data, folder / "a.png")
        assert image.shape == (3, 32, 32)
    assert Image.MAX_IMAGE_PIXELS == 300  # restored after every read


def test_max_image_pixels_must_be_a_positive_count_or_null(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.max_image_pixels must be a positive number of pixels or null.*got 0"):
        folder_data(tmp_path / "folder", max_image_pixels=0)
    with pytest.raises(ConfigError, match=r"data\.max_image_pixels .* got 'big'"):
        coco_data(tmp_path / "coco", max_image_pixels="big")


# ---------------------------------------------------------------------------------------- segmentation masks


def _voc_segmentation(root: Path) -> Path:
    """A VOC segmentation layout of one 32×24 image, "a"; returns the path its class map goes to."""
    _png(root / "JPEGImages" / "a.png")
    (root / "Annotations").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("a\n")
    (root / "SegmentationClass").mkdir()
    return root / "SegmentationClass" / "a.png"


@pytest.mark.parametrize(
    ("make_mask", "bad"),
    [
        (lambda path: save_mask_png(np.array([[0, 1, 7, 255]], np.uint8).repeat(24, 0).repeat(8, 1), path), "[7]"),
        (lambda path: Image.fromarray(np.full((24, 32), -3, np.int32)).save(path, format="TIFF"), "[-3]"),
    ],
    ids=["above_the_classes", "negative"],
)
def test_mask_value_outside_the_classes_names_the_mask_the_values_and_the_class_count(tmp_path, make_mask, bad):
    mask_file = _voc_segmentation(tmp_path)
    make_mask(mask_file)
    data = VOCDataModule(str(tmp_path), task="segmentation", class_names=["dog"], splits={"val": "train"}, **OPTIONS)
    data.setup("fit")
    with pytest.raises(DataError) as err:
        data.dataset("train")[0]
    assert one_line(err).startswith(f"{mask_file}: class indices {bad} are outside 0..1 (2 classes; 255 = ignore)")


# ------------------------------------------------------------------------------------------- 1×1 images


def _one_pixel_coco(root: Path, **options) -> CocoDataModule:
    """A COCO set of one 1×1 image with one object covering it (box and polygon)."""
    dot = {"id": 1, "file_name": "dot.png", "width": 1, "height": 1}
    polygon = {**_box(1, 1, [0, 0, 1, 1]), "segmentation": [[0, 0, 1, 0, 1, 1, 0, 1]]}
    _coco(root, [dot], [polygon], DOG)
    _png(root / "images" / "dot.png", width=1, height=1)
    return CocoDataModule(str(root), splits={"train": "train", "val": "train"}, **{**OPTIONS, **options})


@pytest.mark.parametrize("task", ["detection", "segmentation"])
def test_a_one_pixel_image_works_under_the_strong_preset(tmp_path, task):
    torch.manual_seed(0)
    data = _one_pixel_coco(tmp_path, task=task, augment="strong")
    data.setup("fit")
    augmented = data.dataset("train")
    for _ in range(40):  # the random crop used to draw an empty crop of a 1-pixel side about one time in three
        image, target = augmented[0]
        assert image.shape == (3, 32, 32)
        if task == "detection":
            assert ((target["boxes"] >= 0) & (target["boxes"] <= 32)).all()
        else:
            assert set(target.unique().tolist()) <= {0, 1, 255}
    _, target = data.dataset("train", train=False)[0]
    if task == "detection":
        assert target["boxes"].tolist() == [[0.0, 0.0, 32.0, 32.0]] and target["labels"].tolist() == [0]
    else:
        assert (target == 1).all()


def test_a_one_pixel_image_folder_image_works_under_the_strong_preset(tmp_path):
    for split in ("train", "val", "test"):
        for name in ("dot", "spot"):  # a classifier needs 2 classes
            (tmp_path / split / name).mkdir(parents=True)
            Image.fromarray(np.array([[[200, 10, 50]]], np.uint8)).save(tmp_path / split / name / "1.png")
    torch.manual_seed(0)
    data = ImageFolderDataModule(str(tmp_path), image_size=16, augment="strong", num_workers=0)
    data.setup("fit")
    augmented = data.train_dataloader().dataset
    for _ in range(40):
        image, label = augmented[0]
        assert image.shape == (3, 16, 16) and label == 0
    image, _ = data.val_dataloader().dataset[0]
    assert (image.permute(1, 2, 0) == torch.tensor([200, 10, 50], dtype=torch.uint8)).all()


# ---------------------------------------------------------------------------------- weights and checkpoints


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (torch.ones(3), "holds a Tensor, not a state dict (a mapping of parameter names to tensors)"),
        ([1, 2], "holds a list, not a state dict (a mapping of parameter names to tensors)"),
        ({"epoch": 3}, "no tensors found (expected a state dict"),
    ],
    ids=["tensor", "list", "no_tensors"],
)
def test_a_weights_file_that_is_not_a_state_dict_is_named(tmp_path, content, problem):
    path = tmp_path / "weights.pt"
    torch.save(content, path)
    with pytest.raises(DataError) as err:
        load_pretrained(create_model("lenet5"), path)
    assert one_line(err).startswith(f"{path}: {problem}")


@pytest.fixture(scope="module")
def segmenter_run(tmp_path_factory) -> Path:
    """A run directory whose checkpoints/last.ckpt is a segmenter trained one step on 32×32 shapes images."""
    sizes = {"num_train": 4, "num_val": 2, "num_test": 2}
    root = generate_shapes(tmp_path_factory.mktemp("shapes") / "data", image_size=32, **sizes)
    options = {"task": "segmentation", "scene_size": 32, "batch_size": 4, "augment": "none", "num_workers": 0}
    data = ShapesDataModule(str(root), **options, **sizes)
    tiny = {"model": "resnet18", "model_options": {"width_mult": 0.25}, "head": {"hidden_channels": 8}}
    run = tmp_path_factory.mktemp("run")
    trained_run(run, SemanticSegmenter(**tiny, num_classes=4), data, "segmentation")
    return run


def test_a_checkpoint_cut_in_half_is_one_line_naming_it_in_vr_predict(segmenter_run, tmp_path, capsys):
    checkpoint = shutil.copytree(segmenter_run, tmp_path / "run") / "checkpoints" / "last.ckpt"
    whole = checkpoint.read_bytes()
    checkpoint.write_bytes(whole[: len(whole) // 2])
    _png(tmp_path / "photos" / "a.png")
    with pytest.raises(DataError) as err:
        predict(checkpoint, tmp_path / "photos")
    expected = f"{checkpoint}: truncated, corrupt or not a checkpoint of a segmentation task ("
    assert one_line(err).startswith(expected)
    capsys.readouterr()
    assert main(["predict", f"ckpt_path={checkpoint}", f"input={tmp_path / 'photos'}"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {err.value}"]


def test_vr_predict_keeps_the_runs_max_image_pixels(segmenter_run, tmp_path):
    run = shutil.copytree(segmenter_run, tmp_path / "run")
    config = OmegaConf.load(run / "config.yaml")
    config.data.max_image_pixels = 700
    (run / "config.yaml").write_text(OmegaConf.to_yaml(config))
    photo = tmp_path / "photos" / "a.png"
    _png(photo)  # 32×24 = 768 pixels
    with pytest.raises(DataError) as err:
        predict(run / "checkpoints" / "last.ckpt", photo.parent, tmp_path / "out")
    assert one_line(err).startswith(f"{photo}: 32×24 = 768 pixels, above data.max_image_pixels=700")
