"""timm's registry of modules and functions that must not be traced (FX leaves)."""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def _notrace() -> tuple[tuple[type, ...], tuple[Any, ...]]:
    try:
        from timm.layers import get_notrace_functions, get_notrace_modules
    except ImportError:  # timm is a dependency, but keep the graph pass usable without it
        return (), ()
    return tuple(get_notrace_modules()), tuple(get_notrace_functions())


def timm_notrace_modules() -> tuple[type, ...]:
    """Module types timm registers as not traceable (dynamic padding, shape-dependent code)."""
    return _notrace()[0]


def timm_notrace_functions() -> tuple[Any, ...]:
    """Functions timm registers as not traceable."""
    return _notrace()[1]


__all__ = ["timm_notrace_functions", "timm_notrace_modules"]
