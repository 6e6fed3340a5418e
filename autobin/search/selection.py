"""Choosing the float layers under a budget: a 0/1 knapsack on measured importance.

Keeping layer ``L`` float costs ``cost(L)`` budget units (read from autobin's report, see
:mod:`autobin.search.budget`) and lowers the predicted loss by ``importance(L)``. The best set
for a capacity is found by dynamic programming over capacity buckets, with every cost rounded
*up* to whole buckets, so a chosen set never exceeds the capacity it was chosen for; the
remaining capacity is then filled greedily with exact costs (best importance per cost first).
One table gives the best set for every capacity at once: the Pareto front of predicted loss vs
budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .budget import Budget, format_value
from .errors import SearchError
from .sensitivity import LayerSensitivity

BUCKETS = 4000


@dataclass(frozen=True)
class Item:
    """One candidate as the knapsack sees it."""

    name: str
    cost: float
    value: float


class Knapsack:
    """Best sets of items (max total value) for every capacity up to ``max_capacity``."""

    def __init__(self, items: Sequence[Item], max_capacity: float, buckets: int = BUCKETS):
        self.items = list(items)
        top = max(max_capacity, sum(max(i.cost, 0.0) for i in self.items), 1e-12)
        self.unit = top / buckets
        self.weights = [max(0, math.ceil(i.cost / self.unit - 1e-9)) for i in self.items]
        self.buckets = buckets
        best = np.zeros(buckets + 1)
        self.keep = np.zeros((len(self.items), buckets + 1), dtype=bool)
        for k, (item, w) in enumerate(zip(self.items, self.weights, strict=True)):
            if item.value <= 0:
                continue
            if w > buckets:
                continue
            with_item = np.full(buckets + 1, -np.inf)
            with_item[w:] = best[: buckets + 1 - w] + item.value
            take = with_item > best
            self.keep[k] = take
            best = np.where(take, with_item, best)
        self.best = best

    def choose(self, capacity: float) -> list[str]:
        """Names of the chosen items, in item order, whose exact total cost is <= capacity."""
        if capacity < 0:
            return []
        bucket = min(self.buckets, math.floor(capacity / self.unit + 1e-9))
        taken: set[int] = set()
        for k in range(len(self.items) - 1, -1, -1):
            if self.keep[k, bucket]:
                taken.add(k)
                bucket -= self.weights[k]
        spent = sum(self.items[k].cost for k in taken)
        if spent > capacity:  # rounding can only make this smaller; guard all the same
            taken, spent = set(), 0.0
        rest = sorted(
            (k for k in range(len(self.items)) if k not in taken and self.items[k].value > 0),
            key=lambda k: (-self.items[k].value / max(self.items[k].cost, 1e-12), k),
        )
        for k in rest:
            if spent + self.items[k].cost <= capacity:
                taken.add(k)
                spent += self.items[k].cost
        return [self.items[k].name for k in sorted(taken)]

    def cost(self, names: Sequence[str]) -> float:
        by_name = {i.name: i for i in self.items}
        return sum(by_name[n].cost for n in names)

    def value(self, names: Sequence[str]) -> float:
        by_name = {i.name: i for i in self.items}
        return sum(by_name[n].value for n in names)

    def front(self, points: int = 60) -> list[list[str]]:
        """Best sets at ``points`` capacities from 0 to the cost of every item, distinct."""
        top = sum(max(i.cost, 0.0) for i in self.items)
        seen: list[list[str]] = []
        for p in range(points + 1):
            chosen = self.choose(top * p / points)
            if not seen or chosen != seen[-1]:
                seen.append(chosen)
        return seen


class Selection:
    """The float layers of measured candidates under one budget.

    Attributes:
        budget: the budget.
        capacity: its slack with every candidate binary (what float layers may spend).
        costs: per candidate, the budget units keeping it float costs.
        importance: per candidate, its measured importance.
        knapsack: the :class:`Knapsack` over all candidates.
    """

    def __init__(
        self,
        layers: Sequence[LayerSensitivity],
        all_binary_totals: dict,
        budget: Budget,
    ) -> None:
        self.budget, self.order = budget, [s.candidate.name for s in layers]
        self.all_binary_value = budget.value(all_binary_totals)
        self.capacity = budget.slack(all_binary_totals)
        if self.capacity < 0:
            raise impossible_budget(budget, self.all_binary_value, len(layers))
        self.costs = {
            s.candidate.name: self.capacity - budget.slack(s.totals_float) for s in layers
        }
        self.importance = {s.candidate.name: s.importance for s in layers}
        items = [Item(n, self.costs[n], self.importance[n]) for n in self.order]
        self.knapsack = Knapsack(items, self.capacity)

    def choose(self) -> list[str]:
        """The float layers of highest total importance within the budget, in model order."""
        return self.knapsack.choose(self.capacity)

    def value(self, float_names: Sequence[str]) -> float:
        """The budgeted total of the recipe that keeps ``float_names`` float (linear model)."""
        spent = sum(self.costs[n] for n in float_names)
        ref = self.all_binary_value
        return ref - spent if self.budget.is_lower_bound else ref + spent

    def weakest(self, float_names: Sequence[str]) -> str:
        """The layer of ``float_names`` with the least importance per unit of cost."""
        return min(float_names, key=lambda n: (self.importance[n] / max(self.costs[n], 1e-12), n))


def impossible_budget(budget: Budget, best: float, candidates: int) -> SearchError:
    """The error for a budget that even the all-binary configuration does not meet."""
    text = format_value(budget.kind, best)
    bound = "at most" if budget.is_lower_bound else "at least"
    what = budget.kind.removeprefix("max_").removeprefix("min_").replace("_", " ")
    return SearchError(
        f"impossible budget {budget.describe()}: even with all {candidates} searchable layers "
        f"binary the model's {what} is {text} (layers autobin cannot binarize stay float); set "
        f"{budget.flag} to {bound} {text}"
    )


__all__ = ["BUCKETS", "Item", "Knapsack", "Selection", "impossible_budget"]
