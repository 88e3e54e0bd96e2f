"""Lightning callbacks of the framework (the ones Lightning itself has are used as they are)."""

from .divergence import DivergenceGuard
from .throughput import TrainingThroughput

__all__ = ["DivergenceGuard", "TrainingThroughput"]
