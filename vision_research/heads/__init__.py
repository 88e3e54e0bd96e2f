"""Task heads that read a backbone's stage maps through its ``feature_info`` (see ``models/base.py``); the YOLO
heads live with their task, in ``tasks/detection/``."""

from .fcn import AuxiliaryHead, BilinearUpsample, FCNHead
