"""Silent corruption: EXIF-rotated photos read in the displayed frame, and ``vr predict`` outputs that never collide.

A phone photo is stored sideways with an EXIF orientation; its labels (YOLO, VOC without ``<size>``) are in the
frame viewers display, so pixels, sizes and boxes must all be read in that frame. ``vr predict`` names its outputs
by the input's path relative to the input folder, extension kept, so ``a.jpg``, ``a.png`` and ``sub/a.jpg`` each
get their own output.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from tests.tasks.detection.test_task import SHAPES, V1_HEAD, quiet_trainer
from vision_research.data.annotated import AnnotatedImageDataset
from vision_research.data.annotations import AnnotationSet
from vision_research.data.formats import read_voc_xml, read_yolo
from vision_research.data.images import image_size, load_rgb
from vision_research.data.shapes import ShapesDataModule, generate_shapes
from vision_research.predict import predict
from vision_research.tasks import SemanticSegmenter, YoloDetector

DISPLAYED = (60, 40)  # (width, height) as viewers show the photo
RED_BOX = (30, 5, 50, 15)  # x1, y1, x2, y2 of the red rectangle in the displayed frame
# The stored pixels for each quarter-turn orientation: the displayed image turned back.
STORED = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def sideways_photo(path: Path, orientation: int) -> Path:
    """A JPEG stored turned a quarter, with the EXIF orientation that shows the red rectangle at ``RED_BOX``."""
    width, height = DISPLAYED
    pixels = np.full((height, width, 3), 40, np.uint8)
    x1, y1, x2, y2 = RED_BOX
    pixels[y1:y2, x1:x2] = (255, 0, 0)
    exif = Image.Exif()
    exif[274] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).transpose(STORED[orientation]).save(path, exif=exif, quality=95)
    return path


def red_pixels(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(xs, ys) of the clearly red pixels of an [H, W, 3] array."""
    ys, xs = np.nonzero((image[..., 0] > 180) & (image[..., 1] < 80) & (image[..., 2] < 80))
    return xs, ys


def yolo_set(root: Path, orientation: int) -> AnnotationSet:
    sideways_photo(root / "images" / "a.jpg", orientation)
    x1, y1, x2, y2 = RED_BOX
    width, height = DISPLAYED
    cx, cy, w, h = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text(f"0 {cx} {cy} {w} {h}\n")
    return read_yolo(root / "images", root / "labels", class_names=["red"])


def voc_set(root: Path, orientation: int) -> AnnotationSet:
    sideways_photo(root / "JPEGImages" / "a.jpg", orientation)
    x1, y1, x2, y2 = RED_BOX
    xml = root / "Annotations" / "a.xml"
    xml.parent.mkdir()
    xml.write_text(  # VOC corners are 1-based pixels, both inclusive
        "<annotation><filename>a.jpg</filename><object><name>red</name>"
        f"<bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>"
        "</object></annotation>"
    )
    return AnnotationSet([read_voc_xml(xml, root / "JPEGImages")], ["red"], root / "JPEGImages")


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_image_size_and_pixels_are_in_the_displayed_frame(tmp_path, orientation):
    path = sideways_photo(tmp_path / "a.jpg", orientation)
    assert image_size(path) == DISPLAYED
    image = load_rgb(path, expected_size=DISPLAYED)  # a COCO / VOC size is in the displayed frame too
    assert image.shape == (DISPLAYED[1], DISPLAYED[0], 3)
    xs, ys = red_pixels(image)
    assert xs.size > 100 and xs.min() >= RED_BOX[0] - 1 and ys.max() <= RED_BOX[3]


@pytest.mark.parametrize("orientation", sorted(STORED))
@pytest.mark.parametrize("reader", [yolo_set, voc_set])
def test_labelled_boxes_cover_the_red_pixels_the_dataset_reads(tmp_path, reader, orientation):
    dataset = AnnotatedImageDataset(reader(tmp_path, orientation), transform=None)
    image, record = dataset.load(0)
    assert (record.width, record.height) == DISPLAYED
    (box,) = [obj.box for obj in record.objects]
    np.testing.assert_allclose(box, RED_BOX, atol=1e-3)
    xs, ys = red_pixels(image)
    inside = (xs >= box[0] - 1) & (xs < box[2] + 1) & (ys >= box[1] - 1) & (ys < box[3] + 1)
    assert xs.size > 100 and inside.all()


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("robust") / "shapes", image_size=64, **SHAPES)


def trained_run(root: Path, task: L.LightningModule, data: ShapesDataModule, name: str) -> Path:
    """``root/checkpoints/last.ckpt`` after one training step, with the ``config.yaml`` vr predict reads."""
    L.seed_everything(0, verbose=False)
    trainer = quiet_trainer(root, max_steps=1, limit_val_batches=0, enable_checkpointing=False)
    trainer.fit(task, datamodule=data)
    (root / "checkpoints").mkdir(parents=True)
    trainer.save_checkpoint(root / "checkpoints" / "last.ckpt")
    config = {"task": {"name": name}, "data": {"name": "shapes", "image_size": 64}}
    (root / "config.yaml").write_text(OmegaConf.to_yaml(config))
    return root / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def checkpoints(shapes_root, tmp_path_factory) -> dict[str, Path]:
    """{task name: checkpoint} of a segmenter and a detector, each trained one step on the shapes data."""
    options = {"num_workers": 0, "scene_size": 64, "batch_size": 8, "augment": "none", **SHAPES}
    segmentation = ShapesDataModule(str(shapes_root), task="segmentation", **options)
    detection = ShapesDataModule(str(shapes_root), **options)
    tiny = {"model": "resnet18", "model_options": {"width_mult": 0.25}}
    segmenter = SemanticSegmenter(**tiny, num_classes=segmentation.num_classes, head={"hidden_channels": 16})
    detector = YoloDetector(**YoloDetector.options_from_data({**tiny, "num_classes": 3, "head": V1_HEAD}, detection))
    return {
        "segmentation": trained_run(tmp_path_factory.mktemp("seg_run"), segmenter, segmentation, "segmentation"),
        "detection": trained_run(tmp_path_factory.mktemp("det_run"), detector, detection, "detection"),
    }


# Inputs whose stems collide, each of its own size so that an output shows which input it came from.
COLLIDING = {"a.jpg": (50, 30), "a.png": (30, 50), "sub/a.jpg": (40, 44)}


@pytest.mark.parametrize(("task", "suffix"), [("segmentation", ".png"), ("detection", ".jpg")])
def test_colliding_names_get_one_output_each(checkpoints, tmp_path, task, suffix):
    photos = tmp_path / "photos"
    for index, (name, (width, height)) in enumerate(COLLIDING.items()):
        (photos / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((height, width, 3), 60 * index, np.uint8)).save(photos / name)
    output = predict(checkpoints[task], photos, tmp_path / "out")
    written = sorted(p.relative_to(output).as_posix() for p in output.rglob(f"*{suffix}"))
    assert written == sorted(f"{name}{suffix}" for name in COLLIDING)
    for name, size in COLLIDING.items():
        assert Image.open(output / f"{name}{suffix}").size == size, name
    if task == "detection":
        results = json.loads((output / "predictions.json").read_text())
        assert {r["file_name"] for r in results} <= set(COLLIDING)


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_predict_reads_the_displayed_frame(checkpoints, tmp_path, orientation):
    photo = sideways_photo(tmp_path / "photo.jpg", orientation)
    (mask,) = predict(checkpoints["segmentation"], photo, tmp_path / "out").glob("*.png")
    assert Image.open(mask).size == DISPLAYED
