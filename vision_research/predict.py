"""``vr predict``: run a trained checkpoint on image files and write what each task predicts.

The checkpoint's run directory (``config.yaml`` beside ``checkpoints/``) says which task and input size it
was trained with, and the largest image it reads (``data.max_image_pixels``, default PIL's limit). Images are
letterboxed (detection, segmentation) or resized and centre-cropped (classification) exactly as in evaluation,
and the outputs are mapped back to each original image:

- classification → ``predictions.csv`` (file, top-5 classes and probabilities);
- segmentation → ``<name>.png`` class maps in the VOC palette, at the original resolution;
- detection → ``predictions.json`` (COCO results) and ``<name>.jpg`` with the boxes drawn.

``<name>`` is the image's path relative to the input folder, extension kept (``sub/a.jpg`` → ``sub/a.jpg.png``):
the outputs mirror the folder tree, so ``a.jpg``, ``a.png`` and ``sub/a.jpg`` never overwrite each other. The
CSV's ``file`` and the JSON's ``file_name`` are this name too.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from .checkpoints import LOAD_ERRORS, load_error
from .constants import IMAGENET_MEAN, IMAGENET_STD
from .data.formats import save_mask_png
from .data.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, load_rgb
from .data.transforms import (
    boxes_to_original,
    build_classification_transforms,
    build_transforms,
    letterbox_geometry,
)
from .errors import ConfigError, DataError
from .metrics.detection import detections_to_coco
from .tasks import TASKS
from .train import import_user_modules


def run_directory(checkpoint: Path) -> Path:
    """The run directory of ``checkpoint``: the folder holding ``config.yaml``, above ``checkpoints/`` or beside it."""
    for folder in (checkpoint.parent.parent, checkpoint.parent):
        if (folder / "config.yaml").is_file():
            return folder
    raise DataError(
        f"{checkpoint}: no config.yaml in its run directory; the checkpoint must stay in the run it was trained in "
        "(<run>/checkpoints/)"
    )


def run_config(checkpoint: Path) -> DictConfig:
    """The resolved config saved in the checkpoint's run directory."""
    return OmegaConf.load(run_directory(checkpoint) / "config.yaml")


def load_task(checkpoint: str | Path, device: str = "cpu") -> tuple[DictConfig, L.LightningModule]:
    """The run config of ``checkpoint`` and its task with the saved weights (the run's ``imports`` imported first).

    The file is loaded with ``weights_only=True`` (no pickled code runs). A missing file, a run without config.yaml, an
    unknown ``task.name``, a file holding a pickled type that is not allowed and a file that is not a checkpoint of
    that task raise one-line ``DataError`` / ``ConfigError`` naming the file.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise DataError(f"{checkpoint}: checkpoint not found")
    cfg = run_config(checkpoint)
    import_user_modules(list(cfg.get("imports") or []))
    try:
        task_class = TASKS.get(cfg.task.name)
    except ConfigError as err:
        raise ConfigError(f"{run_directory(checkpoint) / 'config.yaml'}: task.name: {err}") from None
    try:
        task = task_class.load_from_checkpoint(checkpoint, map_location=device, weights_only=True)
    except LOAD_ERRORS as err:
        raise load_error(checkpoint, err, f"truncated, corrupt or not a checkpoint of a {cfg.task.name} task") from None
    return cfg, task


def image_files(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            return files
        raise DataError(f"{source}: no images (files ending in {', '.join(IMAGE_SUFFIXES)})")
    raise DataError(f"{source}: no such image file or folder")


def output_name(path: Path, source: Path) -> str:
    """The name ``path`` is reported and written under: relative to the ``source`` folder, extension kept."""
    return path.relative_to(source).as_posix() if source.is_dir() else path.name


def output_file(output: Path, name: str, suffix: str) -> Path:
    """``output/<name><suffix>`` (``sub/a.jpg`` → ``sub/a.jpg.png``), its folder made."""
    path = output / f"{name}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _batches(files: Sequence[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(files), size):
        yield list(files[start : start + size])


class Predictor:
    """A task loaded from a checkpoint, with the evaluation preprocessing of its run."""

    def __init__(self, checkpoint: str | Path, device: str = "cpu") -> None:
        self.cfg, task = load_task(checkpoint, device)
        self.task_name = self.cfg.task.name
        self.task = task.eval()
        self.device = device
        data = self.cfg.data
        self.image_size = int(data.get("image_size") or data.get("scene_size") or 224)
        self.mean = tuple(data.get("mean") or IMAGENET_MEAN)
        self.std = tuple(data.get("std") or IMAGENET_STD)
        self.max_pixels = data.get("max_image_pixels", DEFAULT_MAX_PIXELS)  # the run's decompression-bomb limit
        if self.task_name == "classification":
            self.transform = build_classification_transforms(self.image_size, train=False)
        else:
            self.transform = build_transforms("none", self.image_size, train=False)

    def prepare(self, files: Sequence[Path]) -> tuple[torch.Tensor, list[np.ndarray]]:
        originals = [load_rgb(path, max_pixels=self.max_pixels) for path in files]
        if self.task_name == "classification" and self.task.hparams.in_chans != 3:
            raise ConfigError("vr predict reads RGB photos; this classifier was trained on single-channel digits")
        kwargs = {} if self.task_name == "classification" else {"bboxes": np.zeros((0, 4)), "labels": np.zeros(0)}
        pixels = [self.transform(image=image, **kwargs)["image"] for image in originals]
        batch = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float().div(255)
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return ((batch - mean) / std).to(self.device), originals

    @torch.no_grad()
    def __call__(self, files: Sequence[Path]) -> tuple[Any, list[np.ndarray]]:
        images, originals = self.prepare(files)
        return self.task(images), originals


def segmentation_maps(logits: torch.Tensor, originals: Sequence[np.ndarray], image_size: int) -> list[np.ndarray]:
    """Class maps at each original resolution: the letterbox padding cut off, logits resized, argmax."""
    maps = []
    for scores, original in zip(logits, originals, strict=True):
        height, width = original.shape[:2]
        scale, pad_x, pad_y = letterbox_geometry(height, width, image_size)
        top, left = round(pad_y), round(pad_x)
        content = scores[:, top : top + round(height * scale), left : left + round(width * scale)]
        resized = F.interpolate(content[None].float(), size=(height, width), mode="bilinear", align_corners=False)
        maps.append(resized[0].argmax(dim=0).to(torch.uint8).cpu().numpy())
    return maps


def write_detections(
    predictor: Predictor, names: Sequence[str], raw: Any, originals: Sequence[np.ndarray], output: Path, first_id: int
) -> list[list[dict]]:
    """Per image: COCO results in the original frame (``file_name``: its name) and ``<name>.jpg`` with the boxes."""
    task = predictor.task
    category_ids = task.hparams.category_ids or list(range(1, task.hparams.num_classes + 1))
    results = []
    for offset, (name, found, original) in enumerate(zip(names, task.detect(raw), originals, strict=True)):
        height, width = original.shape[:2]
        boxes = boxes_to_original(found["boxes"], height, width, predictor.image_size)
        found = {**found, "boxes": boxes}
        image_results = detections_to_coco(
            [first_id + offset], [boxes], [found["scores"]], [found["labels"]], category_ids
        )
        results.append([{**r, "file_name": name} for r in image_results])
        drawn = task.draw(torch.tensor(original).permute(2, 0, 1), found)
        Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(output_file(output, name, ".jpg"), quality=92)
    return results


def predict(checkpoint: str | Path, source: str | Path, output: str | Path | None = None, batch_size: int = 16) -> Path:
    """Predict every image of ``source`` (a file or a folder) and write the results under ``output``."""
    predictor = Predictor(checkpoint)
    source = Path(source)
    files = image_files(source)
    names = {path: output_name(path, source) for path in files}
    output = Path(output) if output else Path(checkpoint).parent.parent / "predictions"
    output.mkdir(parents=True, exist_ok=True)
    rows, detections = [], []
    for chunk in _batches(files, batch_size):
        outputs, originals = predictor(chunk)
        if predictor.task_name == "segmentation":
            for path, class_map in zip(chunk, segmentation_maps(outputs, originals, predictor.image_size), strict=True):
                save_mask_png(class_map, output_file(output, names[path], ".png"))
        elif predictor.task_name == "classification":
            class_names = predictor.task.hparams.class_names or [str(i) for i in range(outputs.shape[1])]
            top = outputs.softmax(dim=1).topk(min(5, outputs.shape[1]), dim=1)
            for path, scores, labels in zip(chunk, top.values, top.indices, strict=True):
                rows.append([names[path], *(f"{class_names[i]}:{s:.4f}" for s, i in zip(scores, labels, strict=True))])
        elif predictor.task_name == "detection":
            detections.extend(
                write_detections(predictor, [names[p] for p in chunk], outputs, originals, output, len(detections))
            )
        else:
            raise ConfigError(f"vr predict does not know the task '{predictor.task_name}'")
    if predictor.task_name == "detection":
        (output / "predictions.json").write_text(json.dumps([r for image in detections for r in image]))
    if rows:
        with open(output / "predictions.csv", "w", newline="") as f:
            csv.writer(f).writerows([["file", "top-5 class:probability"], *rows])
    return output
