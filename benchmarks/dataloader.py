"""Loader throughput: our COCO datamodule vs torchvision's CocoDetection + transforms v2, same images.

Both pipelines do the same work per image: decode the JPEG, letterbox it (longest side → ``--size``,
centre-padded to a square), convert the boxes, and collate batches of uint8 tensors with per-image
targets. The two loaders alternate over ``--repeats`` rounds (each a full pass over the data after one
warm-up pass); the report gives images/s for each and the ratio ours / torchvision (goal ≥ 1.0).

    python benchmarks/dataloader.py                       # ../shared/data/coco128-train if present
    python benchmarks/dataloader.py --root DIR --ann annotations/instances_val2017.json --workers 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from vision_research.data.coco import CocoDataModule  # noqa: E402

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco128-train"


def torchvision_loader(root: Path, ann: str, image_dir: str, size: int, batch: int, workers: int) -> DataLoader:
    from torchvision import datasets
    from torchvision.transforms import v2

    transform = v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(size=None, max_size=size),
            v2.CenterCrop(size),  # pads the short side: a centred letterbox
        ]
    )
    dataset = datasets.CocoDetection(str(root / image_dir), str(root / ann), transforms=transform)
    dataset = datasets.wrap_dataset_for_transforms_v2(dataset, target_keys=["boxes", "labels", "image_id"])
    return DataLoader(
        dataset,
        batch_size=batch,
        num_workers=workers,
        persistent_workers=workers > 0,
        collate_fn=lambda items: (torch.stack([i for i, _ in items]), [t for _, t in items]),
    )


def our_loader(root: Path, ann: str, image_dir: str, size: int, batch: int, workers: int, augment: str) -> DataLoader:
    data = CocoDataModule(
        str(root),
        splits={"train": ann, "val": ann},
        image_dirs={"train": image_dir, "val": image_dir},
        image_size=size,
        batch_size=batch,
        eval_batch_size=batch,
        num_workers=workers,
        augment=augment,
    )
    return data.train_dataloader() if augment != "none" else data.val_dataloader()


def images_per_second(loader: DataLoader) -> float:
    start, count = time.perf_counter(), 0
    for images, _ in loader:
        count += len(images)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--ann", default="annotations/instances.json", help="COCO JSON, relative to root")
    parser.add_argument("--images", default="images", help="image folder, relative to root")
    parser.add_argument("--size", type=int, default=416)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not (args.root / args.ann).is_file():
        raise SystemExit(f"{args.root / args.ann}: not found; pass --root and --ann of a COCO-layout dataset")
    loaders = {
        "ours (letterbox)": our_loader(args.root, args.ann, args.images, args.size, args.batch, args.workers, "none"),
        "torchvision CocoDetection + v2": torchvision_loader(
            args.root, args.ann, args.images, args.size, args.batch, args.workers
        ),
        "ours (train: standard augmentation)": our_loader(
            args.root, args.ann, args.images, args.size, args.batch, args.workers, "standard"
        ),
    }
    rates: dict[str, list[float]] = {name: [] for name in loaders}
    for loader in loaders.values():
        images_per_second(loader)  # warm-up: start the workers, fill the page cache
    for _ in range(args.repeats):
        for name, loader in loaders.items():
            rates[name].append(images_per_second(loader))
    print(
        f"{args.root} ({args.ann}), size {args.size}, batch {args.batch}, workers {args.workers}, "
        f"{args.repeats} rounds, torch threads {torch.get_num_threads()}"
    )
    print("| loader | images/s (median) | min | max |\n|---|---:|---:|---:|")
    for name, values in rates.items():
        print(f"| {name} | {statistics.median(values):.1f} | {min(values):.1f} | {max(values):.1f} |")
    ours, reference = (statistics.median(rates[k]) for k in list(loaders)[:2])
    print(f"ratio ours / torchvision (same letterbox work): {ours / reference:.2f}")


if __name__ == "__main__":
    main()
