"""Layer 4 of autobin: the graph pass (family adapters, annotate, rewrite, report)."""

from ..model_info import ModelInfo, float_model_of, info
from .api import NothingBinarizedWarning, binarize, explain
from .families import ModelFamily, family_of, register_family
from .report import BinarizeReport

__all__ = [
    "BinarizeReport",
    "ModelFamily",
    "ModelInfo",
    "NothingBinarizedWarning",
    "binarize",
    "explain",
    "family_of",
    "float_model_of",
    "info",
    "register_family",
]
