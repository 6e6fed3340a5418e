"""Choosing the float layers under a budget: a 0/1 knapsack on measured importance.

Keeping layer ``L`` float costs ``cost(L)`` budget units (read from autobin's report, see
:mod:`autobin.search.budget`) and lowers the predicted loss by ``importance(L)``. The knapsack
keeps the list of undominated sets (every set that no cheaper set beats in total importance),
adding one layer at a time; costs are summed exactly, never rounded, so a chosen set never
exceeds its capacity. The list is the exact optimum for every capacity at once (the Pareto
front of predicted loss vs budget) while it holds at most :data:`MAX_STATES` sets; past that,
it keeps the best set per cost bucket (still exact in cost, close to optimal in importance),
and the remaining capacity is filled greedily (best importance per cost first).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from .budget import Budget, format_value
from .errors import SearchError
from .sensitivity import LayerSensitivity

MAX_STATES = 20_000


@dataclass(frozen=True)
class Item:
    """One candidate as the knapsack sees it."""

    name: str
    cost: float
    value: float


class Knapsack:
    """Best sets of items (max total value) for every capacity."""

    def __init__(self, items: Sequence[Item], max_states: int = MAX_STATES) -> None:
        self.items = list(items)
        # (cost, value, mask of item indices), cost ascending, value strictly ascending
        states: list[tuple[float, float, int]] = [(0.0, 0.0, 0)]
        top = sum(max(i.cost, 0.0) for i in self.items)
        for k, item in enumerate(self.items):
            if item.value <= 0:
                continue
            cost = max(item.cost, 0.0)  # a layer that frees budget is free: never cheaper
            grown = [(c + cost, v + item.value, m | (1 << k)) for c, v, m in states]
            states = _undominated(states + grown)
            if len(states) > max_states:
                states = _thin(states, top / max_states)
        self.states = states
        self._costs = [c for c, _, _ in states]

    def choose(self, capacity: float) -> list[str]:
        """Names of the chosen items, in item order, whose exact total cost is <= capacity."""
        if capacity < 0:
            return []
        at = bisect.bisect_right(self._costs, capacity) - 1
        spent, _, mask = self.states[at]
        taken = {k for k in range(len(self.items)) if mask >> k & 1}
        rest = sorted(
            (k for k in range(len(self.items)) if k not in taken and self.items[k].value > 0),
            key=lambda k: (-self.items[k].value / max(self.items[k].cost, 1e-12), k),
        )
        for k in rest:
            if spent + max(self.items[k].cost, 0.0) <= capacity:
                taken.add(k)
                spent += max(self.items[k].cost, 0.0)
        return [self.items[k].name for k in sorted(taken)]

    def cost(self, names: Sequence[str]) -> float:
        by_name = {i.name: i for i in self.items}
        return sum(by_name[n].cost for n in names)

    def value(self, names: Sequence[str]) -> float:
        by_name = {i.name: i for i in self.items}
        return sum(by_name[n].value for n in names)

    def front(self) -> list[list[str]]:
        """Every undominated set, cheapest first (the Pareto front)."""
        return [
            [self.items[k].name for k in range(len(self.items)) if mask >> k & 1]
            for _, _, mask in self.states
        ]


def _undominated(states: list[tuple[float, float, int]]) -> list[tuple[float, float, int]]:
    kept: list[tuple[float, float, int]] = []
    for state in sorted(states, key=lambda s: (s[0], -s[1], s[2])):
        if not kept or state[1] > kept[-1][1]:
            kept.append(state)
    return kept


def _thin(states: list[tuple[float, float, int]], width: float) -> list[tuple[float, float, int]]:
    """Keep the best (last, since values ascend) set in every cost bucket of ``width``."""
    best: dict[int, tuple[float, float, int]] = {}
    for state in states:
        best[int(state[0] // width) if width > 0 else 0] = state
    return list(best.values())


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
        self.knapsack = Knapsack(items)

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
        f"{budget.kind}= ({budget.flag}) to {bound} {text}"
    )


__all__ = ["MAX_STATES", "Item", "Knapsack", "Selection", "impossible_budget"]
