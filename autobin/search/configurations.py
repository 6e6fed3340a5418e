"""Candidate layers and the recipes that make each searched configuration.

A *candidate* is a conv or linear layer the base recipe decides by a rule: one it binarizes, or
one it keeps float by policy (stem, classifier, shortcut/downsample, depthwise, linears). Layers
autobin cannot binarize (``unsupported``, ``left alone``) are not candidates; they stay float in
every configuration, and their cost is the floor of every budget.

A *configuration* is the set of candidates that are binary; every other candidate is float. It
is turned into an ordinary recipe that extends the base: float rules for base-binarized layers
that stay float, binarize rules for base-float layers that become binary, each matching layer
names exactly, then the base's own rules. Layers the base binarizes keep the base rule's method
and options.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..graph import BinarizeReport
from ..recipes import Match, Recipe, Rule
from .errors import SearchError

_GLOB_CHARS = re.compile(r"[*?\[\]]")
FLOAT_RULE = "search-float"
BINARY_RULE = "search-binary"


@dataclass(frozen=True)
class Candidate:
    """One layer the search decides.

    Attributes:
        name: qualified module name.
        type_name: module class name.
        kind: ``conv`` or ``linear``.
        macs: MACs per sample (from the report).
        base_binary: whether the base recipe binarizes it.
        base_rule: the base rule that decides it.
    """

    name: str
    type_name: str
    kind: str
    macs: int
    base_binary: bool
    base_rule: str


def find_candidates(report: BinarizeReport) -> list[Candidate]:
    """The layers of ``report`` (the base recipe's dry run) that the search decides.

    Raises:
        SearchError: the model has no conv/linear layer a rule decides.
    """
    found = [
        Candidate(e.name, e.type_name, e.kind, int(e.macs), e.decision == "binarize", e.rule)
        for e in report.layers(kind=None)
        if e.kind in ("conv", "linear")
        and e.decision in ("binarize", "float")
        and e.rule != "unsupported"
    ]
    if not found:
        layers = report.layers()
        raise SearchError(
            f"{report.model} has nothing to search: none of its {len(layers)} layers is a "
            "Conv2d or Linear layer that autobin can binarize (see autobin.explain(model)); "
            "search a model with conv or linear layers"
        )
    return found


def name_pattern(name: str) -> str:
    """A recipe name pattern that matches exactly the layer ``name``."""
    if _GLOB_CHARS.search(name):
        return "re:" + re.escape(name)
    return name


def configuration_recipe(
    base: Recipe, candidates: Iterable[Candidate], binary: Iterable[str], name: str
) -> Recipe:
    """The recipe under which exactly the candidates named in ``binary`` are binary."""
    binary = set(binary)
    to_float = [c.name for c in candidates if c.base_binary and c.name not in binary]
    to_binary = [c.name for c in candidates if not c.base_binary and c.name in binary]
    rules = []
    if to_float:
        rules.append(_rule(to_float, "float", FLOAT_RULE))
    if to_binary:
        rules.append(_rule(to_binary, "binarize", BINARY_RULE))
    return with_rules(base, tuple(rules), name)


def with_rules(base: Recipe, rules: tuple[Rule, ...], name: str) -> Recipe:
    """``base`` with ``rules`` evaluated before its own (what ``extends`` does)."""
    clash = {r.name for r in rules} & {r.name for r in base.rules if r.name}
    if clash:
        raise SearchError(
            f"the base recipe {base.name!r} already has rules named {sorted(clash)}, which the "
            "search uses for its own rules; rename them in the base recipe"
        )
    return dataclasses.replace(base, name=name, rules=rules + base.rules, source=None)


def _rule(names: list[str], action: str, label: str) -> Rule:
    return Rule(
        match=Match(names=tuple(name_pattern(n) for n in names)),
        action=action,  # type: ignore[arg-type]
        name=label,
        reason=f"{label}: this configuration of the search",
    )


__all__ = [
    "BINARY_RULE",
    "FLOAT_RULE",
    "Candidate",
    "configuration_recipe",
    "find_candidates",
    "name_pattern",
    "with_rules",
]
