"""Task losses that are more than a torch one-liner."""

from .yolo_loss import AnchorTargets, YoloAnchorLoss, YoloV1Loss, flatten_targets
