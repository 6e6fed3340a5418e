"""Budgets of the search: what may stay float, read from the totals of autobin's report.

A budget bounds one total of :class:`autobin.BinarizeReport` (``report.totals``):

=================== ==================== =============================================
keyword / CLI flag  report total         meaning
=================== ==================== =============================================
``max_float_macs``  ``flops``            float MACs of the whole model (<=)
``max_ops``         ``ops``              float MACs + BOPs / 64, as BNN papers count (<=)
``min_binary_share`` ``binary_mac_share`` share of conv/linear MACs that is binary (>=)
``max_size``        ``packed_size_bytes`` packed checkpoint size in bytes (<=)
=================== ==================== =============================================

Every budget is expressed as a *slack*: ``limit - value`` for an upper bound and ``value -
limit`` for a lower bound, so a set of float layers meets the budget exactly when its slack is
``>= 0``. Keeping a layer float costs ``slack(all binary) - slack(that layer float)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .errors import SearchError

BudgetKind = Literal["max_float_macs", "max_ops", "min_binary_share", "max_size"]

#: budget keyword -> (report total, is a lower bound, what it counts, unit)
BUDGETS: dict[str, tuple[str, bool, str, str]] = {
    "max_float_macs": ("flops", False, "float MACs of the whole model", "MACs"),
    "max_ops": ("ops", False, "OPs = float MACs + BOPs/64", "OPs"),
    "min_binary_share": ("binary_mac_share", True, "binary share of conv/linear MACs", ""),
    "max_size": ("packed_size_bytes", False, "packed size", "bytes"),
}


@dataclass(frozen=True)
class Budget:
    """One bound on a report total.

    Attributes:
        kind: the keyword (``max_float_macs``, ``max_ops``, ``min_binary_share``, ``max_size``).
        limit: the bound.
    """

    kind: BudgetKind
    limit: float

    @property
    def total(self) -> str:
        """The key of ``BinarizeReport.totals`` this budget reads."""
        return BUDGETS[self.kind][0]

    @property
    def is_lower_bound(self) -> bool:
        """True for ``min_binary_share`` (the value must reach the limit)."""
        return BUDGETS[self.kind][1]

    @property
    def flag(self) -> str:
        """The command-line flag, e.g. ``--max-float-macs``."""
        return "--" + self.kind.replace("_", "-")

    def value(self, totals: Mapping[str, Any]) -> float:
        """The bounded total of a report's ``totals``."""
        return float(totals[self.total])

    def slack(self, totals: Mapping[str, Any]) -> float:
        """How far ``totals`` are inside the budget (``>= 0`` means the budget is met)."""
        value = self.value(totals)
        return value - self.limit if self.is_lower_bound else self.limit - value

    def met(self, totals: Mapping[str, Any]) -> bool:
        """Whether ``totals`` meet the budget exactly (no tolerance)."""
        value = self.value(totals)
        return value >= self.limit if self.is_lower_bound else value <= self.limit

    def describe(self, value: float | None = None) -> str:
        """``max_float_macs <= 5,000,000`` (and the reached value when given)."""
        sign = ">=" if self.is_lower_bound else "<="
        text = f"{self.kind} {sign} {format_value(self.kind, self.limit)}"
        if value is not None:
            text += f" (reached {format_value(self.kind, value)})"
        return text


def format_value(kind: str, value: float) -> str:
    """A budget value for people: a share as a percentage, counts with thousands separators."""
    if kind == "min_binary_share":
        return f"{100 * value:.2f}%"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def make_budget(**given: float | None) -> Budget:
    """The one budget among the keyword arguments that are not None.

    Raises:
        SearchError: none or several given, a negative limit, or a share outside ``[0, 1]``.
    """
    chosen = {k: v for k, v in given.items() if v is not None}
    flags = ", ".join(f"{k}= (--{k.replace('_', '-')})" for k in BUDGETS)
    if len(chosen) != 1:
        what = "no budget" if not chosen else f"several budgets ({', '.join(sorted(chosen))})"
        raise SearchError(
            f"the search got {what}; give exactly one of {flags}, e.g. max_float_macs=5e6"
        )
    ((kind, limit),) = chosen.items()
    if kind not in BUDGETS:
        raise SearchError(f"unknown budget {kind!r}; give exactly one of {flags}")
    try:
        limit = float(limit)
    except (TypeError, ValueError):
        raise SearchError(f"{kind} must be a number, got {limit!r}") from None
    if not limit >= 0 or limit == float("inf"):
        raise SearchError(f"{kind} must be a finite number >= 0, got {limit!r}")
    if kind == "min_binary_share" and limit > 1:
        raise SearchError(
            f"min_binary_share is a share of the conv/linear MACs between 0 and 1, got {limit}; "
            "e.g. 0.95 for 95%"
        )
    return Budget(kind, limit)  # type: ignore[arg-type]


__all__ = ["BUDGETS", "Budget", "BudgetKind", "format_value", "make_budget"]
