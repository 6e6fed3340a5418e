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


__all__ = ["BUCKETS", "Item", "Knapsack"]
