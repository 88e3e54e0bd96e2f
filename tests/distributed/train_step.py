"""Take one SGD step of a batch-norm network on 1 or 2 GPU processes (DDP over NCCL); save rank 0's weights.

``python tests/distributed/train_step.py DEVICES OUT.pt [--sync-batchnorm]``. The 2-process run splits the same
16 images 8 / 8 (the distributed sampler deals them out in turn), so with SyncBatchNorm its step must equal
one process's step on all 16: batch statistics, gradients and running statistics alike. Without it each
process normalises with its own half and the weights differ. (torch's SyncBatchNorm runs on CUDA only.)
"""

from __future__ import annotations

import os
import sys
import warnings

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import lightning as L  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from vision_research.tasks import ImageClassifier  # noqa: E402

IMAGES = 16


def main() -> None:
    devices, out = int(sys.argv[1]), sys.argv[2]
    torch.set_num_threads(1)
    L.seed_everything(0, verbose=False)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(IMAGES, 3, 32, 32, generator=generator) * 2 + 1
    labels = torch.randint(0, 10, (IMAGES,), generator=generator)
    loader = DataLoader(TensorDataset(images, labels), batch_size=IMAGES // devices, shuffle=False)
    task = ImageClassifier(
        "resnet20", num_classes=10, in_chans=3, optimizer={"name": "sgd", "lr": 0.5, "weight_decay": 0.0}
    )
    trainer = L.Trainer(
        accelerator="cuda",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        sync_batchnorm="--sync-batchnorm" in sys.argv,
        max_steps=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(task, train_dataloaders=loader)
    if trainer.global_rank == 0:
        sync_layers = sum(isinstance(m, torch.nn.SyncBatchNorm) for m in task.modules())
        torch.save({"state_dict": task.state_dict(), "sync_layers": sync_layers}, out)


if __name__ == "__main__":
    main()
