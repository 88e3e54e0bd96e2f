"""Models: the registry, the backbone contract and one file per architecture family."""

from . import fashion_cnn, lenet  # noqa: F401  (importing a family registers its models)
from .base import Backbone, count_parameters
from .registry import create_model, list_models, model_options, register_model
from .weights import LoadReport, load_pretrained

__all__ = [
    "Backbone",
    "LoadReport",
    "count_parameters",
    "create_model",
    "list_models",
    "load_pretrained",
    "model_options",
    "register_model",
]
