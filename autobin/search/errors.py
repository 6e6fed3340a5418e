"""The one error type of the search: bad budgets, empty calibration data, nothing to search."""

from __future__ import annotations

from ..errors import AutobinError


class SearchError(AutobinError, ValueError):
    """The search cannot run as asked; the message names the problem and the fix."""


__all__ = ["SearchError"]
