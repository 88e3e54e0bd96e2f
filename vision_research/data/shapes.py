"""The embedded shapes dataset: rendered scenes (``scenes.py``) written to disk in every annotation format.

``generate_shapes`` writes, deterministically from its seed::

    root/images/<split>/<split>_00000.png                     the scenes (PNG, lossless)
    root/annotations/instances_<split>.json                   COCO: boxes + exact RLE masks of the visible pixels
    root/VOC/{Annotations, JPEGImages, SegmentationClass, ImageSets/Main, ImageSets/Segmentation}
    root/YOLO/{images, labels}/<split>/, classes.txt, data.yaml

COCO is the scenes' own layout; every other format of ``formats.FORMATS`` gets a copy in ``root/<FORMAT>/`` (its
writer's layout, images hard-linked). The copies describe the same boxes (VOC's integer corners are exact: boxes are
pixel-aligned), and ``ShapesDataModule`` reads any of them (``annotation_format``, through the datamodule registered
under the format's name), so it doubles as a check of the readers. With ``root=None`` the data goes to
``$VR_DATA_DIR`` (default ``~/.cache/vision_research``), generated once per parameter set: ``vr train`` needs no
data from the user.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ConfigError
from ..paths import data_cache_dir
from .annotated import AnnotatedDataModule, MaskReader
from .annotations import AnnotationSet, ImageRecord, ObjectAnnotation
from .formats import FORMATS, save_mask_png
from .registry import DATAMODULES, create_datamodule, register_datamodule
from .scenes import SHAPE_CLASSES, Scene, render_scene

SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}
READY = "READY.json"
NATIVE_FORMAT = "coco"  # the scenes' own layout: images/<split>/ and annotations/ at the root


def format_root(root: Path, fmt: str) -> Path:
    """Where the ``fmt`` copy of the shapes data at ``root`` is: ``root`` itself for COCO, else ``root/<FORMAT>/``."""
    return root if fmt == NATIVE_FORMAT else root / fmt.upper()


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _record(scene: Scene, file_name: str) -> ImageRecord:
    objects = [
        ObjectAnnotation(
            box=box,
            category=category,
            segmentation=_rle(scene.instance_mask == k + 1),
            area=float((scene.instance_mask == k + 1).sum()),
        )
        for k, (box, category) in enumerate(zip(scene.boxes, scene.categories, strict=True))
    ]
    height, width = scene.image.shape[:2]
    return ImageRecord(file_name=file_name, width=width, height=height, objects=objects)


def _write_split(root: Path, split: str, count: int, seed: int, render_options: dict[str, Any]) -> None:
    rng = np.random.default_rng([seed, SPLIT_SEEDS[split]])
    image_dir = root / "images" / split
    image_dir.mkdir(parents=True)
    records, ids = [], []
    for n in range(count):
        scene = render_scene(rng, **render_options)
        name = f"{split}_{n:05d}"
        Image.fromarray(scene.image).save(image_dir / f"{name}.png", compress_level=1)
        save_mask_png(scene.semantic_mask(), format_root(root, "voc") / "SegmentationClass" / f"{name}.png")
        records.append(_record(scene, f"{name}.png"))
        ids.append(name)
    annotations = AnnotationSet(records, list(SHAPE_CLASSES), image_dir=image_dir, source=f"shapes {split}")
    for name, row in FORMATS.items():
        row.write(annotations, format_root(root, name), split, copy_images=name != NATIVE_FORMAT)
    segmentation_sets = format_root(root, "voc") / "ImageSets" / "Segmentation"
    segmentation_sets.mkdir(parents=True, exist_ok=True)
    (segmentation_sets / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))


def generate_shapes(
    root: str | Path | None = None,
    num_train: int = 1000,
    num_val: int = 200,
    num_test: int = 200,
    image_size: int = 128,
    max_objects: int = 4,
    seed: int = 0,
) -> Path:
    """Write the shapes dataset (all three layouts) and return its root; an existing complete one is reused.

    Generation goes to a temporary folder renamed into place at the end, so that an interrupted run or two
    processes (DDP) never leave or read a half-written dataset.
    """
    params = {
        "num_train": num_train,
        "num_val": num_val,
        "num_test": num_test,
        "image_size": image_size,
        "max_objects": max_objects,
        "seed": seed,
    }
    if min(num_train, num_val, num_test) < 1:
        raise ConfigError(f"shapes: every split needs at least one image; got {params}")
    if root is None:
        digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]
        root = data_cache_dir() / f"shapes_{image_size}px_{digest}"
    root = Path(root).expanduser()
    if (root / READY).is_file():
        if json.loads((root / READY).read_text()) != params:
            raise ConfigError(f"{root}: holds shapes data generated with other parameters; choose another root")
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        render_options = {"image_size": image_size, "max_objects": max_objects}
        for split, count in (("train", num_train), ("val", num_val), ("test", num_test)):
            _write_split(staging, split, count, seed, render_options)
        (staging / READY).write_text(json.dumps(params, sort_keys=True))
        try:
            staging.rename(root)
        except OSError:  # another process finished first (or root exists but is incomplete)
            if not (root / READY).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


@register_datamodule(name="shapes")
class ShapesDataModule(AnnotatedDataModule):
    """The embedded shapes data for detection or segmentation, read through its copy in ``annotation_format``
    by the datamodule of that name."""

    def __init__(
        self,
        root: str | None = None,
        annotation_format: str = "coco",
        num_train: int = 1000,
        num_val: int = 200,
        num_test: int = 200,
        scene_size: int = 128,
        max_objects: int = 4,
        seed: int = 0,
        image_size: int | None = None,
        **options: Any,
    ) -> None:
        readable = [name for name in FORMATS if name in DATAMODULES]
        if annotation_format not in readable:
            raise ConfigError(f"data.annotation_format must be one of {', '.join(readable)}; got '{annotation_format}'")
        options["image_size"] = image_size or scene_size
        super().__init__(**options)
        self.generation = {
            "num_train": num_train,
            "num_val": num_val,
            "num_test": num_test,
            "image_size": scene_size,
            "max_objects": max_objects,
            "seed": seed,
        }
        self.root, self.annotation_format = root, annotation_format
        self._reader: AnnotatedDataModule | None = None

    def prepare_data(self) -> None:
        generate_shapes(self.root, **self.generation)

    def reader(self) -> AnnotatedDataModule:
        """The datamodule of ``annotation_format`` over its copy of the generated files (generated on first use)."""
        if self._reader is None:
            root = generate_shapes(self.root, **self.generation)
            options = {
                "root": str(format_root(root, self.annotation_format)),
                "splits": {"train": "train", "val": "val", "test": "test"},
                "task": self.task,
                "augment": self.augment,
                "image_size": self.image_size,
                "num_workers": 0,
            }
            if "class_names" in DATAMODULES.options(self.annotation_format):  # VOC's default: its own 20 classes
                options["class_names"] = SHAPE_CLASSES
            self._reader = create_datamodule(self.annotation_format, **options)
        return self._reader

    def read_split(self, split: str) -> AnnotationSet | None:
        return self.reader().read_split(split)

    def mask_reader(self, annotations: AnnotationSet, num_classes: int) -> MaskReader:
        return self.reader().mask_reader(annotations, num_classes)
