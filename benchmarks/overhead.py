"""Framework overhead: our ``ImageClassifier`` + Lightning ``Trainer`` against a plain PyTorch training loop.

Both sides train the same backbone (``create_model``) on the same in-memory images through the same
``DataLoader``, with the same optimizer (``vision_research.optim.build_optimizer``: SGD, momentum 0.9, weight
decay off biases and norms), the same precision (autocast) and memory format. Ours adds what the task does on
every step — train accuracy with torchmetrics, ``self.log`` of the loss — and Lightning's loop; the
``run defaults`` row adds what ``vr train`` adds: the TensorBoard logger (loss every 20 steps) and two
checkpoints per epoch. Each round times whole ``fit`` calls (set-up included) against the same number of plain
epochs; the sides alternate after one warm-up round each, and the medians give the ratio (goal ≥ 0.95).

    python benchmarks/overhead.py                               # resnet18, 64 px, batch 32, bf16 where native
    python benchmarks/overhead.py --precision 32-true --rounds 5
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import lightning as L  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from vision_research.models import create_model  # noqa: E402
from vision_research.optim import build_optimizer  # noqa: E402
from vision_research.speed import AUTOCAST_DTYPES, SpeedOptions, resolve_precision, to_channels_last  # noqa: E402
from vision_research.tasks import ImageClassifier  # noqa: E402

OPTIMIZER = {"name": "sgd", "lr": 0.01, "weight_decay": 1e-4}


def make_loader(args: argparse.Namespace) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    count = args.batch_size * args.steps
    images = torch.randn(count, 3, args.img_size, args.img_size, generator=generator)
    labels = torch.randint(0, args.num_classes, (count,), generator=generator)
    return DataLoader(TensorDataset(images, labels), batch_size=args.batch_size, shuffle=True, drop_last=True)


def plain_loop(args: argparse.Namespace, loader: DataLoader) -> Callable[[], None]:
    """A fresh model trained for ``args.epochs`` epochs by hand."""

    def run() -> None:
        model = create_model(args.model, num_classes=args.num_classes)
        if args.channels_last:
            to_channels_last(model)
        optimizer = build_optimizer(model, **OPTIMIZER)
        criterion = torch.nn.CrossEntropyLoss()
        dtype = AUTOCAST_DTYPES.get(args.precision)
        model.train()
        for _ in range(args.epochs):
            for images, labels in loader:
                with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                    loss = criterion(model(images), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

    return run


def lightning_fit(args: argparse.Namespace, loader: DataLoader, run_defaults: bool) -> Callable[[], None]:
    """A fresh ``ImageClassifier`` fitted by a Trainer for ``args.epochs`` epochs."""

    def run() -> None:
        task = ImageClassifier(args.model, num_classes=args.num_classes, in_chans=3, optimizer=OPTIMIZER)
        with tempfile.TemporaryDirectory() as run_dir:
            callbacks = [SpeedOptions(channels_last=args.channels_last)]
            if run_defaults:
                callbacks += [
                    ModelCheckpoint(dirpath=run_dir, filename="best", monitor="train/loss", save_top_k=1),
                    ModelCheckpoint(dirpath=run_dir, filename="last", monitor=None, save_top_k=1),
                ]
            trainer = L.Trainer(
                accelerator="cpu",
                precision=args.precision,
                max_epochs=args.epochs,
                logger=TensorBoardLogger(run_dir, name="", version="") if run_defaults else False,
                log_every_n_steps=20,
                callbacks=callbacks,
                enable_checkpointing=run_defaults,
                enable_progress_bar=False,
                enable_model_summary=False,
                num_sanity_val_steps=0,
                default_root_dir=run_dir,
            )
            trainer.fit(task, train_dataloaders=loader)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", default="auto", help="32-true | bf16-mixed | auto (the framework default)")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    args = parser.parse_args()
    args.precision = resolve_precision(args.precision, "cpu")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    L.seed_everything(0, verbose=False)
    loader = make_loader(args)
    runs = {
        "plain PyTorch loop": plain_loop(args, loader),
        "ImageClassifier + Trainer": lightning_fit(args, loader, run_defaults=False),
        "… + run defaults (TensorBoard, checkpoints)": lightning_fit(args, loader, run_defaults=True),
    }
    for run in runs.values():  # warm-up: allocator, oneDNN kernels, imports
        run()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - started)
    images = args.batch_size * args.steps * args.epochs
    plain = images / statistics.median(seconds["plain PyTorch loop"])
    print(
        f"{args.model}, {args.img_size} px, batch {args.batch_size}, {args.steps} steps × {args.epochs} epochs, "
        f"{args.precision}, channels_last={args.channels_last}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {args.rounds} rounds (median)"
    )
    print("| training loop | img/s | ratio to the plain loop |\n|---|---:|---:|")
    for name, times in seconds.items():
        rate = images / statistics.median(times)
        print(f"| {name} | {rate:.1f} | {rate / plain:.3f} |")


if __name__ == "__main__":
    main()
