"""Lightning callbacks of the framework (the ones Lightning itself has are used as they are)."""

from .divergence import DivergenceGuard
from .ema import WarmupEMA
from .feature_cache import FeatureCache
from .finetune import BackboneFreeze
from .random_state import RandomStateCheckpoint
from .run_checkpoint import RunCheckpoint
from .signals import StopOnSignal
from .throughput import TrainingThroughput
