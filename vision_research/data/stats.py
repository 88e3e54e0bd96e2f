"""Dataset statistics for ``vr data stats``: class counts, boxes per image, box sizes, image sizes.

Box sizes are reported as √(w·h) in pixels with COCO's small / medium / large limits (32², 96²), the
split the COCO AP_S / AP_M / AP_L figures use.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .annotations import AnnotationSet
from .formats import FORMATS, read_annotations

COCO_SIZE_LIMITS = (32.0, 96.0)


@dataclass
class DatasetStats:
    images: int
    objects: int
    class_counts: dict[str, int]
    boxes_per_image: np.ndarray
    box_sizes: np.ndarray
    image_sizes: Counter
    crowd: int
    difficult: int

    @property
    def size_groups(self) -> dict[str, int]:
        small, large = COCO_SIZE_LIMITS
        return {
            "small": int((self.box_sizes < small).sum()),
            "medium": int(((self.box_sizes >= small) & (self.box_sizes < large)).sum()),
            "large": int((self.box_sizes >= large).sum()),
        }


def dataset_stats(annotations: AnnotationSet) -> DatasetStats:
    objects = [obj for r in annotations.images for obj in r.objects]
    return DatasetStats(
        images=len(annotations.images),
        objects=len(objects),
        class_counts=annotations.class_counts(),
        boxes_per_image=np.array([len(r.objects) for r in annotations.images], dtype=np.int64),
        box_sizes=np.sqrt(np.array([obj.box_area for obj in objects], dtype=np.float64)),
        image_sizes=Counter((r.width, r.height) for r in annotations.images),
        crowd=sum(obj.iscrowd for obj in objects),
        difficult=sum(obj.difficult for obj in objects),
    )


def detect_format(root: Path) -> tuple[str, Path]:
    """(format, path to read) of the data set at ``root``: the first row of ``FORMATS`` that finds one there."""
    for name, row in FORMATS.items():
        found = row.find(root)
        if found is not None:
            return name, found
    expected = "; ".join(f"{name}: {row.layout}" for name, row in FORMATS.items())
    raise DataError(f"{root}: not a dataset folder of a known format ({expected})")


def load_for_stats(root: str | Path, fmt: str = "auto", image_set: str | None = None) -> AnnotationSet:
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"{root}: no such file or folder")
    if fmt == "auto":
        fmt, root = detect_format(root)
    return read_annotations(root, fmt, image_set=image_set)


def plot_stats(stats: DatasetStats, path: str | Path) -> Path:
    """Class counts, boxes per image, box sizes and image sizes as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    names, counts = zip(*stats.class_counts.items(), strict=True) if stats.class_counts else ((), ())
    axes[0, 0].bar(range(len(names)), counts)
    axes[0, 0].set_xticks(range(len(names)), names, rotation=90, fontsize=6 if len(names) > 30 else 8)
    axes[0, 0].set_title("objects per class")
    top = int(stats.boxes_per_image.max(initial=0))
    axes[0, 1].hist(stats.boxes_per_image, bins=np.arange(top + 2) - 0.5)
    axes[0, 1].set_title("boxes per image")
    axes[1, 0].hist(stats.box_sizes, bins=40)
    for limit in COCO_SIZE_LIMITS:
        axes[1, 0].axvline(limit, color="k", linestyle="--", linewidth=1)
    axes[1, 0].set_title("box size √(w·h) in px (COCO small | medium | large)")
    sizes = np.array(list(stats.image_sizes.elements())).reshape(-1, 2)
    axes[1, 1].scatter(sizes[:, 0], sizes[:, 1], s=8, alpha=0.5)
    axes[1, 1].set_xlabel("width")
    axes[1, 1].set_ylabel("height")
    axes[1, 1].set_title("image sizes")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
