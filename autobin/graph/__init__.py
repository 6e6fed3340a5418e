"""Layer 4 of autobin: the graph pass (timm-aware tracing, annotate, rewrite, report)."""

from .api import NothingBinarizedWarning, binarize, explain, float_model_of
from .report import BinarizeReport

__all__ = ["BinarizeReport", "NothingBinarizedWarning", "binarize", "explain", "float_model_of"]
