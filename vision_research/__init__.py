"""vision_research: the classic CNN canon in PyTorch + Lightning."""

import os as _os

# Offline by design (setdefault: the user's own choice wins): albumentations checks for updates at import
# and timm waits for the Hugging Face hub unless told not to.
_os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
_os.environ.setdefault("HF_HUB_OFFLINE", "1")

__version__ = "0.1.0"
