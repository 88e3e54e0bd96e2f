"""Our YOLO detector against ultralytics' YOLOv8n: both from scratch, trained one after the other on this machine,
both scored by the framework's ``coco_evaluate`` (pycocotools) on the same held-out COCO annotations.

ultralytics is **not** a dependency of vision_research; this script needs it (``pip install ultralytics``) and
exits with that one line without it.

    python benchmarks/detector_vs_ultralytics.py                                  # the shapes scenes
    python benchmarks/detector_vs_ultralytics.py --data coco128 --root ../shared/data/coco128-train

- ``shapes``: the embedded scenes (128 px; 1,000 train / 200 val / 200 test, seed 0). YOLOv8n (``yolov8n.yaml``,
  no pretrained weights, ultralytics' default augmentation and schedule) trains on the YOLO export, batch 16,
  30 epochs; ours is ``vr train experiment=yolo_shapes_fast data.num_workers=0``.
- ``coco128``: real COCO photos (the longer side 320 px, 80 classes): the first ``--train-images`` images by id
  train, the rest are held out (validation during training and the score); YOLOv8n trains 20 epochs, ours the
  same experiment on the COCO layout at 320 px for 30 epochs.

Both validate on the val split after every epoch and are scored with their **last** weights on the test split
(100 detections per image). Wall time is each training call: ultralytics' ``YOLO.train`` and our whole
``vr train`` command (start-up, training, validation and its own test). Results go to ``--out`` (one JSON per
detector); ``--reuse`` keeps those and trains only a side that has none.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from statistics import median

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
# Importing ultralytics sets OMP_NUM_THREADS=1 in os.environ (and NUMEXPR_MAX_THREADS); our run is started with
# the environment as it was before, so that it is not held to one thread.
ENVIRONMENT_BEFORE_ULTRALYTICS = dict(os.environ)

from vision_research.data.shapes import generate_shapes  # noqa: E402
from vision_research.metrics import coco_evaluate  # noqa: E402

SHOWN = ("map", "map_50", "map_75", "mar_100")
# data.num_workers=0: on the CPU, as ultralytics does there, the data are loaded in the training process (on 2 cores
# loader workers would compete with the two training threads).
OURS = {
    "shapes": ["experiment=yolo_shapes_fast", "data.num_workers=0"],
    "coco128": [
        "experiment=yolo_shapes_fast",
        "data=coco",
        "data.image_size=320",
        "trainer.max_epochs=30",
        "data.num_workers=0",
    ],
}
ULTRALYTICS_EPOCHS = {"shapes": 30, "coco128": 20}


def shapes_split(out: Path) -> dict:
    """The shapes data as both detectors read it: our overrides, ultralytics' data.yaml and the test split."""
    root = generate_shapes()
    yolo = root / "YOLO"
    names = (yolo / "classes.txt").read_text().split()
    write_data_yaml(out / "data.yaml", yolo, "images/train", "images/val", names)
    return {
        "data_yaml": out / "data.yaml",
        "image_size": 128,
        "test_json": root / "annotations" / "instances_test.json",
        "test_images": yolo / "images" / "test",
        "ours": [],
    }


def coco128_split(out: Path, root: Path, train_images: int) -> dict:
    """The first ``train_images`` images (by id) to train, the rest held out; COCO files and ultralytics lists."""
    instances = json.loads((root / "annotations" / "instances.json").read_text())
    images = sorted(instances["images"], key=lambda image: image["id"])
    if not 0 < train_images < len(images):
        raise SystemExit(f"--train-images must be in 1..{len(images) - 1} for {len(images)} images")
    categories = sorted(instances["categories"], key=lambda category: category["id"])
    for name, part in (("train", images[:train_images]), ("test", images[train_images:])):
        ids = {image["id"] for image in part}
        subset = {
            **instances,
            "images": part,
            "annotations": [a for a in instances["annotations"] if a["image_id"] in ids],
        }
        (out / f"instances_{name}.json").write_text(json.dumps(subset))
        print(describe_split(name, subset))
        (out / f"{name}.txt").write_text("".join(f"{out / 'images' / image['file_name']}\n" for image in part))
    link_yolo_layout(root, out, [image["file_name"] for image in images])
    write_data_yaml(out / "data.yaml", out, "train.txt", "test.txt", [c["name"] for c in categories])
    splits = {"train": out / "instances_train.json", "val": out / "instances_test.json"}
    return {
        "data_yaml": out / "data.yaml",
        "image_size": 320,
        "test_json": out / "instances_test.json",
        "test_images": root / "images",
        "ours": [
            f"data.root={root}",
            *(f"data.splits.{split}={path}" for split, path in splits.items()),
            f"data.splits.test={splits['val']}",
            *(f"data.image_dirs.{split}=images" for split in ("train", "val", "test")),
        ],
    }


def describe_split(name: str, instances: dict) -> str:
    """How much a COCO split holds: images, boxes, classes, and the median class's boxes and images."""
    boxes_per_class = Counter(a["category_id"] for a in instances["annotations"])
    pairs = {(a["category_id"], a["image_id"]) for a in instances["annotations"]}
    images_per_class = Counter(category for category, _ in pairs)
    return (
        f"{name}: {len(instances['images'])} images, {sum(boxes_per_class.values())} boxes of "
        f"{len(boxes_per_class)} classes; the median class: {median(boxes_per_class.values()):g} boxes, "
        f"{median(images_per_class.values()):g} images"
    )


def link_yolo_layout(root: Path, out: Path, file_names: list[str]) -> None:
    """``out/images`` and ``out/labels`` as links to ``root``'s files: ultralytics writes its label cache beside
    the labels folder, so into ``out``, not into the data folder."""
    for folder, suffix in (("images", None), ("labels", ".txt")):
        (out / folder).mkdir(exist_ok=True)
        for file_name in file_names:
            name = Path(file_name).with_suffix(suffix).name if suffix else file_name
            link = out / folder / name
            if not link.is_symlink():
                link.symlink_to(root / folder / name)


def write_data_yaml(path: Path, root: Path, train: str, val: str, names: list[str]) -> None:
    """Ultralytics' dataset file; class i of its labels is the i-th category by COCO id."""
    lines = [f"path: {root}", f"train: {train}", f"val: {val}", "names:"]
    lines += [f"  {i}: {json.dumps(name)}" for i, name in enumerate(names)]
    path.write_text("".join(f"{line}\n" for line in lines))


def train_ultralytics(data: dict, out: Path, epochs: int, seed: int) -> dict:
    """YOLOv8n from scratch; the wall time of ``YOLO.train`` and the scores of its last weights on test."""
    from ultralytics import YOLO
    from ultralytics.utils import torch_utils

    # ultralytics trains on NUM_THREADS = cores − 1 torch threads on the CPU, keeping a core for data loading, but
    # then loads the data in the main process (workers = 0 on the CPU): on 2 cores one would idle. It gets every
    # core, as our run does.
    torch_utils.NUM_THREADS = os.cpu_count()
    model = YOLO("yolov8n.yaml")
    started = time.perf_counter()
    model.train(
        data=str(data["data_yaml"]),
        epochs=epochs,
        batch=16,
        imgsz=data["image_size"],
        device="cpu",
        workers=2,
        pretrained=False,
        amp=False,
        plots=False,
        seed=seed,
        project=str(out),
        name="yolov8n",
        exist_ok=True,
        verbose=False,
    )
    seconds = time.perf_counter() - started
    stats = score_ultralytics(out / "yolov8n" / "weights" / "last.pt", data)
    return {"detector": f"ultralytics YOLOv8n, {epochs} epochs", "seconds": seconds, **stats}


def score_ultralytics(weights: Path, data: dict) -> dict[str, float]:
    """COCO figures of the weights' detections on the test split (confidence ≥ 0.001, NMS IoU 0.7, ≤ 100 each)."""
    from ultralytics import YOLO

    model = YOLO(str(weights))
    truth = json.loads(Path(data["test_json"]).read_text())
    category_ids = sorted(category["id"] for category in truth["categories"])
    detections = []
    for image in truth["images"]:
        (found,) = model.predict(
            str(data["test_images"] / image["file_name"]),
            imgsz=data["image_size"],
            conf=0.001,
            iou=0.7,
            max_det=100,
            device="cpu",
            verbose=False,
        )
        boxes = found.boxes
        for (x1, y1, x2, y2), score, label in zip(
            boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), strict=True
        ):
            detections.append(
                {
                    "image_id": image["id"],
                    "category_id": category_ids[int(label)],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": score,
                }
            )
    return coco_evaluate(truth, detections, backend="pycocotools")


def train_ours(data: dict, out: Path, overrides: list[str], seed: int) -> dict:
    """Our ``vr train`` command; its wall time and the test figures it wrote to metrics.json."""
    run_dir = out / "ours"
    command = [sys.executable, "-m", "vision_research.cli", "train", *overrides, *data["ours"], f"seed={seed}"]
    command += [f"hydra.run.dir={run_dir}", "callbacks.progress_bar=none"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=ENVIRONMENT_BEFORE_ULTRALYTICS)
    seconds = time.perf_counter() - started
    (out / "ours.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"vr train failed (log: {out / 'ours.log'}):\n{done.stderr[-3000:]}")
    summary = json.loads((run_dir / "metrics.json").read_text())
    stats = {name: summary["metrics"][f"test/{name}"] for name in SHOWN}
    label = f"ours, vr train {' '.join(overrides)}, {summary['epochs']} epochs"
    return {"detector": label, "seconds": seconds, **stats}


def markdown_table(rows: list[dict]) -> str:
    header = "| detector | wall time (s) | " + " | ".join(f"test {name}" for name in SHOWN) + " |"
    lines = [header, "|---|---:|" + "---:|" * len(SHOWN)]
    for row in rows:
        lines.append(
            f"| {row['detector']} | {row['seconds']:.0f} | " + " | ".join(f"{row[name]:.4f}" for name in SHOWN) + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=sorted(OURS), default="shapes")
    parser.add_argument("--root", type=Path, help="coco128: the folder with images/ and annotations/instances.json")
    parser.add_argument("--train-images", type=int, default=100, help="coco128: how many images train")
    parser.add_argument("--epochs", type=int, help="YOLOv8n's epochs (default: 30 on shapes, 20 on coco128)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ours", nargs="+", help="our vr train overrides (default: experiment=yolo_shapes_fast)")
    parser.add_argument("--out", type=Path, help="default: runs/ultralytics_comparison/<data>")
    parser.add_argument("--reuse", action="store_true", help="keep results in --out; train only the missing side")
    args = parser.parse_args()
    try:
        import ultralytics  # noqa: F401
    except ImportError as missing:
        raise SystemExit(
            "this comparison needs ultralytics, which vision_research does not depend on: pip install ultralytics"
        ) from missing
    out = (args.out or Path("runs") / "ultralytics_comparison" / args.data).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.data == "coco128" and args.root is None:
        raise SystemExit("--data coco128 needs --root, the coco128 folder (images/, annotations/instances.json)")
    data = shapes_split(out) if args.data == "shapes" else coco128_split(out, args.root.resolve(), args.train_images)
    results = []
    for name, train in (
        ("ultralytics", lambda: train_ultralytics(data, out, args.epochs or ULTRALYTICS_EPOCHS[args.data], args.seed)),
        ("ours", lambda: train_ours(data, out, args.ours or OURS[args.data], args.seed)),
    ):
        path = out / f"{name}.json"
        if not (args.reuse and path.is_file()):
            path.write_text(json.dumps(train(), indent=2))
        results.append(json.loads(path.read_text()))
    print(markdown_table(results))


if __name__ == "__main__":
    main()
