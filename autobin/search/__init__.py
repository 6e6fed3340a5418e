"""Layer 7 of autobin: which layers stay float, measured instead of decided by hand.

>>> import autobin
>>> result = autobin.search(float_model, "mnist5k", max_float_macs=5e6,
...                         output="my-recipe.yaml")                       # doctest: +SKIP
>>> bnn = autobin.binarize(float_model, "my-recipe.yaml")                  # doctest: +SKIP

:func:`search` measures each candidate layer's sensitivity on a calibration set (the
distillation loss against the float model with only that layer binary, and with only that
layer float, after calibrating the activation sets and BatchNorm statistics), combines it with
the layer's cost from autobin's report, and chooses the float layers under one budget. Its
output is an ordinary recipe YAML that extends the base recipe, plus a report (per-layer table,
JSON, Pareto front PNG). This package imports the training stack's losses; ``import autobin``
loads it only when ``autobin.search`` is first used.
"""

import sys
import types
from typing import Any

from .api import search
from .budget import BUDGETS, Budget, make_budget
from .errors import SearchError
from .result import Point, SearchResult

__all__ = ["BUDGETS", "Budget", "Point", "SearchError", "SearchResult", "make_budget", "search"]


class _CallablePackage(types.ModuleType):
    """``autobin.search(model, data, ...)`` calls :func:`search` (as ``autobin.deploy`` does)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return search(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
