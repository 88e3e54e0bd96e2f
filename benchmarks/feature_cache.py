"""Feature caching: a classifier's head trained on a frozen backbone, over the images every epoch vs over features
computed once (``callbacks.finetune.cache_features``; Géron ch. 14, Michelucci ch. 4).

Both runs are ``vr train`` runs (``vision_research.train.train``) of the same config and seed: the embedded MNIST
digits without augmentation, the backbone frozen for every epoch (``BackboneFreeze`` vs ``FeatureCache``). Prints
the whole run's wall time (set-up, the features' extraction, training, validation and the test), the training
throughput, the accuracies and the largest difference between the two trained classifiers' weights.

    python benchmarks/feature_cache.py                           # resnet18, 64 px, 5 epochs, bf16 where native
    python benchmarks/feature_cache.py --precision 32-true       # float32: the two heads equal to float tolerance
    python benchmarks/feature_cache.py --model resnet50 --image-size 96 --epochs 3
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from vision_research.config_tree import config_dir  # noqa: E402
from vision_research.train import train  # noqa: E402


def run(overrides: list[str], run_dir: Path) -> dict:
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    return train(cfg, run_dir)


def classifier_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    return {key: value for key, value in state.items() if key.startswith("model.fc.")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", default="auto", help="trainer.precision (auto: bf16-mixed where native)")
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    common = [
        "data=mnist",
        "data.augment=null",
        f"data.image_size={args.image_size}",
        f"model={args.model}",
        f"trainer.max_epochs={args.epochs}",
        f"seed={args.seed}",
        f"trainer.precision={args.precision}",
        "logger.tensorboard=false",
        "callbacks.progress_bar=none",
        "+trainer.enable_model_summary=false",
        "test_checkpoint=last",
    ]
    variants = {
        "images every epoch (BackboneFreeze)": [f"callbacks.finetune.freeze_epochs={args.epochs}"],
        "features computed once (FeatureCache)": ["callbacks.finetune.cache_features=true"],
    }
    rows, heads = [], []
    with tempfile.TemporaryDirectory() as folder:
        for index, (name, extra) in enumerate(variants.items()):
            run_dir = Path(folder) / str(index)
            summary = run([*common, *extra], run_dir)
            metrics = summary["metrics"]
            rows.append((name, summary["seconds"], summary["train_images_per_second"], metrics))
            precision = summary["precision"]
            heads.append(classifier_weights(run_dir))
    difference = max((heads[0][key] - heads[1][key]).abs().max().item() for key in heads[0])
    base = rows[0][1]
    print(
        f"{args.model}, MNIST {args.image_size} px, {args.epochs} epochs, seed {args.seed}, precision "
        f"{precision}, {torch.get_num_threads()} threads\n"
    )
    print("| head trained on | run wall s | × | train img/s | val/acc1 | test/acc1 |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, seconds, throughput, metrics in rows:
        print(
            f"| {name} | {seconds:.1f} | {base / seconds:.2f} | {throughput:,.0f} | "
            f"{metrics['val/acc1']:.4f} | {metrics['test/acc1']:.4f} |"
        )
    print(f"\nlargest difference between the two classifiers' weights: {difference:.2e}")


if __name__ == "__main__":
    main()
