"""Models: the registry, the backbone contract and one file per architecture family.

Every module of this package is imported here, so that a new family file registers its models
without being listed anywhere else.
"""

import importlib
import pkgutil

from .base import Backbone, count_parameters, freeze_unused_by_features
from .registry import create_model, list_models, model_options, register_model
from .weights import LoadReport, load_pretrained

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
