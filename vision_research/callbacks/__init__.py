"""Lightning callbacks of the framework (the ones Lightning itself has are used as they are)."""

from .throughput import TrainingThroughput

__all__ = ["TrainingThroughput"]
