"""Shared test set-up: offline libraries, CPU only, small thread count for deterministic speed."""

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one intra-op thread is about as fast, and does not thrash when other processes hold the cores.
    A module asks for it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def photo(tmp_path):
    """A 64×80 RGB picture: black and white halves, a red square at (10..30, 10..30)."""
    pixels = np.zeros((64, 80, 3), np.uint8)
    pixels[:, 40:] = 255
    pixels[10:30, 10:30] = (200, 40, 40)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    return path
