"""Shared test set-up: offline libraries, CPU only, small thread count for deterministic speed."""

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import warnings  # noqa: E402

warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
