"""The activation kinds a recipe can replace by Maxout, and how each appears in a model.

One table, read by the recipe schema (which kinds a recipe may name), the tracer (which modules
are activation leaves) and the dataflow analysis (which graph calls are functional activations):

* :data:`MODULE_KINDS`: activation module classes (torch's and timm's) by class name;
* :data:`FUNCTION_KINDS`: functions (``F.relu``, ``torch.relu``, ...);
* :data:`METHOD_KINDS`: tensor methods (``x.relu()``);
* :data:`TIMM_FUNCTION_KINDS`: timm's activation functions by name (``timm.layers.swish``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATION_KINDS: tuple[str, ...] = (
    "relu",
    "relu6",
    "leaky_relu",
    "prelu",
    "gelu",
    "silu",
    "hardswish",
    "mish",
)
"""Activation kinds a recipe may replace by Maxout (lower-case names, canonical order)."""

MODULE_KINDS: dict[str, str] = {
    "ReLU": "relu",
    "ReLU6": "relu6",
    "LeakyReLU": "leaky_relu",
    "PReLU": "prelu",
    "GELU": "gelu",
    "GELUTanh": "gelu",
    "QuickGELU": "gelu",
    "SiLU": "silu",
    "Swish": "silu",
    "Hardswish": "hardswish",
    "HardSwish": "hardswish",
    "Mish": "mish",
}
"""Activation module class names (torch's and timm's) -> activation kind."""

FUNCTION_KINDS: dict[Any, str] = {
    F.relu: "relu",
    F.relu_: "relu",
    torch.relu: "relu",
    torch.relu_: "relu",
    F.relu6: "relu6",
    F.leaky_relu: "leaky_relu",
    F.gelu: "gelu",
    F.silu: "silu",
    F.hardswish: "hardswish",
    F.mish: "mish",
}
"""Activation functions -> activation kind."""

METHOD_KINDS: dict[str, str] = {"relu": "relu", "relu_": "relu"}
"""Tensor methods -> activation kind."""

TIMM_FUNCTION_KINDS: dict[str, str] = {
    "swish": "silu",
    "hard_swish": "hardswish",
    "mish": "mish",
    "gelu": "gelu",
    "gelu_tanh": "gelu",
    "quick_gelu": "gelu",
}
"""timm's activation functions (by ``__name__``, defined in a ``timm.`` module) -> kind."""

assert set(MODULE_KINDS.values()) | set(FUNCTION_KINDS.values()) <= set(ACTIVATION_KINDS)


def module_activation_kind(module: nn.Module) -> str | None:
    """The activation kind of ``module`` (e.g. ``"relu"``), or None if it is no activation."""
    return MODULE_KINDS.get(type(module).__name__)


def function_activation_kind(function: Any) -> str | None:
    """The activation kind of a function called in a graph, or None."""
    try:
        kind = FUNCTION_KINDS.get(function)
    except TypeError:  # unhashable callables
        return None
    if kind is None and getattr(function, "__module__", "").startswith("timm."):
        kind = TIMM_FUNCTION_KINDS.get(getattr(function, "__name__", ""))
    return kind


def method_activation_kind(method: str) -> str | None:
    """The activation kind of a tensor method called in a graph (``"relu_"``), or None."""
    return METHOD_KINDS.get(method)


__all__ = [
    "ACTIVATION_KINDS",
    "FUNCTION_KINDS",
    "METHOD_KINDS",
    "MODULE_KINDS",
    "TIMM_FUNCTION_KINDS",
    "function_activation_kind",
    "method_activation_kind",
    "module_activation_kind",
]
