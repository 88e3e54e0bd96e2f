"""Analysis: model summaries, run comparison and visualisation."""

from .summary import LayerInfo, ModelSummary, model_summary

__all__ = ["LayerInfo", "ModelSummary", "model_summary"]
