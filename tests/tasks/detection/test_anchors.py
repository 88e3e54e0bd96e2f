"""k-means anchors (YOLOv2's dimension clusters): planted clusters recovered, deterministic, one-line errors."""

import pytest
import torch

from vision_research.errors import ConfigError
from vision_research.tasks.detection import kmeans_anchors


def test_kmeans_anchors_recovers_planted_clusters():
    generator = torch.Generator().manual_seed(0)
    groups = torch.tensor([[12.0, 16.0], [60.0, 40.0], [150.0, 200.0]])
    wh = torch.cat([g * (1 + 0.05 * (2 * torch.rand(100, 2, generator=generator) - 1)) for g in groups])
    wh = wh[torch.randperm(len(wh), generator=generator)]
    centroids = kmeans_anchors(wh, 3)
    torch.testing.assert_close(centroids, groups, rtol=0.02, atol=0)  # sorted by area, as the groups are
    torch.testing.assert_close(kmeans_anchors(wh, 3), centroids, rtol=0, atol=0)  # deterministic
    assert kmeans_anchors(wh, 5, seed=1).shape == (5, 2)


def test_kmeans_anchors_needs_at_least_k_boxes():
    with pytest.raises(ConfigError, match="at least k boxes"):
        kmeans_anchors(torch.tensor([[10.0, 10.0], [20.0, 30.0]]), 3)
