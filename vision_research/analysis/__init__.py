"""Analysis: model summaries, run comparison, sliding-window localisation."""

from .summary import LayerInfo, ModelSummary, model_summary
