"""``vr predict``: run a trained checkpoint on image files and write what each task predicts.

The checkpoint's run directory (``config.yaml`` beside ``checkpoints/``) says which task and input size it
was trained with, and the largest image it reads (``data.max_image_pixels``, default PIL's limit). Images are
letterboxed (detection, segmentation) or resized and centre-cropped (classification) exactly as in evaluation,
and the outputs are mapped back to each original image:

- classification → ``predictions.csv`` (file, top-5 classes and probabilities);
- localization → ``predictions.csv`` (file, class, probability, box in original pixels) and ``<name>.jpg`` with the
  box drawn;
- segmentation → ``<name>.png`` class maps in the VOC palette, at the original resolution;
- detection → ``predictions.json`` (COCO results) and ``<name>.jpg`` with the boxes drawn.

Each task says what it writes (``VisionTask.predict_images``) and how an image becomes its input
(``VisionTask.preprocessing``, with the task's ``mean`` / ``std``); this module reads and writes the files.

A 1-channel model (MNIST's) reads grey images: a colour image becomes grey as PIL converts it (ITU-R 601-2 luma), with
a note; a 3-channel model reads a grey image as R = G = B, with a note too.

``<name>`` is the image's path relative to the input folder, extension kept (``sub/a.jpg`` → ``sub/a.jpg.png``):
the outputs mirror the folder tree, so ``a.jpg``, ``a.png`` and ``sub/a.jpg`` never overwrite each other. The
CSV's ``file`` and the JSON's ``file_name`` are this name too.
"""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image

from .data.base import normalise
from .data.formats import save_mask_png
from .data.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, load_rgb
from .data.transforms import build_classification_transforms, build_transforms
from .errors import ConfigError, DataError, check_value
from .inference import BACKENDS, build_from_batches, check_backend, serving
from .paths import check_can_create
from .run_dir import PREDICTIONS, load_task, run_directory, run_input_size
from .tasks.base import Prediction


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


def is_grey(image: np.ndarray) -> bool:
    """Whether the H×W×3 ``image`` is grey: R = G = B everywhere."""
    return bool((image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all())


def to_grey(pixels: np.ndarray) -> np.ndarray:
    """H×W×3 RGB ``pixels`` as H×W×1 grey, as PIL converts them (ITU-R 601-2 luma; R = G = B stays as it is)."""
    return np.asarray(Image.fromarray(pixels).convert("L"))[..., None]


# What a model of each channel count reads, and how an image of the other kind is read for it.
CHANNELS = {1: ("in colour", "read as grey (ITU-R 601-2 luma)"), 3: ("grey", "read as R = G = B")}


class Predictor:
    """A task loaded from a checkpoint, with the evaluation preprocessing of its run: the task's ``preprocessing``
    at the run's input size, grey for a 1-channel model, then the task's ``mean`` / ``std``. ``run_cfg``: the run's
    config as composed with the command line's overrides (default: the run's ``config.yaml``). ``converted`` holds
    the files read as the other kind (colour for a 1-channel model, grey for a 3-channel one)."""

    def __init__(self, checkpoint: str | Path, device: str = "cpu", run_cfg: DictConfig | None = None) -> None:
        self.cfg, task = load_task(checkpoint, device)
        if run_cfg is not None:
            self.cfg = run_cfg
        self.task = task.eval()
        self.device = device
        self.in_chans = task.hparams.in_chans
        if self.in_chans not in CHANNELS:
            raise ConfigError(
                f"vr predict reads grey or RGB images; this {self.cfg.task.name} model takes {self.in_chans} channels"
            )
        self.converted: set[Path] = set()
        self.image_size = run_input_size(self.cfg, task)
        # The run's decompression-bomb limit.
        self.max_pixels = self.cfg.data.get("max_image_pixels", DEFAULT_MAX_PIXELS)
        if task.preprocessing not in PREPROCESSING:
            raise ConfigError(f"{type(task).__name__}.preprocessing must be one of {', '.join(PREPROCESSING)}")
        self.transform = PREPROCESSING[task.preprocessing](self.image_size)

    def prepare(self, files: Sequence[Path]) -> tuple[torch.Tensor, list[np.ndarray]]:
        """The normalised input batch of ``files`` and their decoded originals (H×W×3 uint8)."""
        originals = [load_rgb(path, max_pixels=self.max_pixels) for path in files]
        self.converted.update(path for path, image in zip(files, originals, strict=True) if self.is_other_kind(image))
        boxes = {"bboxes": np.zeros((0, 4)), "labels": np.zeros(0)} if self.task.preprocessing == "letterbox" else {}
        pixels = [self.transform(image=image, **boxes)["image"] for image in originals]
        if self.in_chans == 1:
            pixels = [to_grey(image) for image in pixels]
        batch = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2)
        return normalise(batch, *self.task.input_stats).to(self.device), originals

    def is_other_kind(self, image: np.ndarray) -> bool:
        """Whether ``image`` is in colour for a 1-channel model, or grey for a 3-channel one."""
        return is_grey(image) == (self.in_chans == 3)

    def conversion_note(self, count: int) -> str | None:
        """A line on the files of :attr:`converted` among the ``count`` read (None when there are none)."""
        if not self.converted:
            return None
        kind, read_as = CHANNELS[self.in_chans]
        example = min(self.converted)
        return (
            f"{len(self.converted)} of {count} images are {kind} (e.g. {example}): {read_as} for this "
            f"{self.in_chans}-channel model"
        )

    @torch.inference_mode()
    def __call__(self, files: Sequence[Path], first_id: int = 0) -> list[Prediction]:
        """What the task predicts for each of ``files``, numbered from ``first_id`` for COCO results."""
        images, originals = self.prepare(files)
        return self.task.predict_images(images, originals, list(range(first_id, first_id + len(files))))


PREPROCESSING = {
    "letterbox": lambda size: build_transforms("none", size, train=False),
    "resize_crop": lambda size: build_classification_transforms(size, train=False),
}


def predict(
    ckpt_path: str | Path,
    input: str | Path,
    output: str | Path | None = None,
    batch_size: int = 16,
    backend: str = "eager",
    run_cfg: DictConfig | None = None,
    note: Callable[[str], None] = warnings.warn,
) -> Path:
    """Predict every image of ``input`` (a file or a folder) with the checkpoint ``ckpt_path`` and write the results
    under ``output`` (default ``<run>/predictions``), ``batch_size`` images at a time; the task runs on ``backend``
    (:mod:`vision_research.inference`; ``int8`` is calibrated on the first 256 of these images). ``run_cfg``: the
    run's config as composed with overrides (default: the run's ``config.yaml``); ``note`` gets the line on images
    read as another kind (grey / colour) than they are. The arguments up to ``backend`` are the keys of
    ``configs/predict.yaml``."""
    check_value("batch_size", batch_size, "a positive integer")
    check_backend(backend, (*BACKENDS, "auto"))
    predictor = Predictor(ckpt_path, run_cfg=run_cfg)
    output = Path(output) if output else run_directory(Path(ckpt_path)) / PREDICTIONS
    check_can_create(output, "output")
    source = Path(input)
    files = image_files(source)
    output.mkdir(parents=True, exist_ok=True)
    chunks = [files[start : start + batch_size] for start in range(0, len(files), batch_size)]
    forward, _ = build_from_batches(predictor.task, backend, (predictor.prepare(c)[0] for c in chunks), len(chunks))
    with serving(predictor.task, forward):
        write_predictions(predictor, chunks, source, output)
    if text := predictor.conversion_note(len(files)):
        note(text)
    return output


def write_predictions(predictor: Predictor, chunks: Sequence[Sequence[Path]], source: Path, output: Path) -> Path:
    """Predict each chunk of files and write predictions.csv / predictions.json / masks / drawings to ``output``."""
    rows, results, detector = [], [], False
    first_id = 0
    for chunk in chunks:
        for path, found in zip(chunk, predictor(chunk, first_id=first_id), strict=True):
            name = output_name(path, source)
            if found.row:
                rows.append([name, *found.row])
            if found.results is not None:
                detector = True
                results += [{**r, "file_name": name} for r in found.results]
            if found.mask is not None:
                save_mask_png(found.mask, output_file(output, name, ".png"))
            if found.drawing is not None:
                Image.fromarray(found.drawing).save(output_file(output, name, ".jpg"), quality=92)
        first_id += len(chunk)
    if detector:
        (output / "predictions.json").write_text(json.dumps(results))
    if rows:
        with open(output / "predictions.csv", "w", newline="") as f:
            csv.writer(f).writerows([["file", *predictor.task.prediction_columns], *rows])
    return output
