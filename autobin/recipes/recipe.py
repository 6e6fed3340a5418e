"""The :class:`Recipe`: a validated, immutable binarization policy.

Precedence: ``rules`` are evaluated top to bottom for every conv and linear layer; the first
rule whose every ``match`` condition holds decides the layer; a layer that no rule matches
stays float with reason "no rule matched". When a recipe ``extends`` another, its own rules are
evaluated before the inherited ones.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import Where
from .matching import decide, resolve_options, rule_label
from .schema import (
    ActivationPolicy,
    BinarizeDefaults,
    Decision,
    LayerInfo,
    Rule,
    ShortcutPolicy,
)
from .validate import Parts, parse_document


@dataclass(frozen=True)
class Recipe:
    """A binarization recipe: which layers to binarize, how, and what to change around them.

    Build one with :func:`autobin.recipes.load_recipe` or :meth:`Recipe.from_dict`.

    Attributes:
        name: The recipe's name (a built-in name, or the file's ``name`` / stem).
        description: Free text.
        schema_version: The schema version it was written for (1).
        rules: Ordered rules; the first that matches a layer decides it.
        activations: Which activations are replaced by Maxout, and where.
        shortcuts: Real-valued shortcut policy (Bi-Real).
        defaults: Binarize settings every ``binarize`` rule starts from.
        source: The file it was loaded from (``<dict>`` or None when built in memory). Not part
            of equality, :meth:`to_dict` or :attr:`sha256`.
    """

    name: str
    description: str
    schema_version: int
    rules: tuple[Rule, ...]
    activations: ActivationPolicy
    shortcuts: ShortcutPolicy
    defaults: BinarizeDefaults
    source: str | None = field(default=None, compare=False)

    def decide(self, info: LayerInfo) -> Decision:
        """Decide one layer: the first rule whose every condition holds decides it.

        Args:
            info: The layer.

        Returns:
            The decision; float with reason "no rule matched" when no rule matches.
        """
        return decide(self.rules, self.defaults, info)

    def replaces_activation(self, kind: str) -> bool:
        """Whether activations of ``kind`` (e.g. ``relu``) are replaced by Maxout.

        Gates (sigmoid, hardsigmoid, softmax), norms and unknown kinds are never replaced.
        Where they are replaced is :attr:`activations.scope`.
        """
        return kind.lower() in self.activations.replace

    def to_dict(self) -> dict[str, Any]:
        """Return the full normalized recipe as plain data (inheritance already resolved).

        ``Recipe.from_dict(r.to_dict()) == r`` holds.
        """
        return {
            "schema_version": self.schema_version,
            "name": self.name,
            "description": self.description,
            "defaults": self.defaults.to_dict(),
            "rules": [rule.to_dict() for rule in self.rules],
            "activations": self.activations.to_dict(),
            "shortcuts": self.shortcuts.to_dict(),
        }

    @property
    def sha256(self) -> str:
        """SHA-256 hex digest of the canonical JSON of :meth:`to_dict`."""
        canonical = json.dumps(
            self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> Recipe:
        """Rebuild (and validate) a recipe from plain data, e.g. one embedded in config.json.

        Args:
            data: A recipe mapping as written by :meth:`to_dict` (or any recipe without
                ``extends``).
            source: Label used in error messages.

        Raises:
            RecipeError: Invalid data, or ``extends`` (only files may extend).
        """
        where = Where(source)
        parts = parse_document(data, where)
        if parts.extends is not None:
            raise where.error(
                "extends",
                "'extends' cannot be resolved for in-memory recipe data",
                allowed="a complete recipe (as written by Recipe.to_dict())",
                fix="load the file with load_recipe(path), or pass the flattened to_dict() data",
            )
        return assemble(parts, None, where, default_name="custom")


def assemble(parts: Parts, parent: Recipe | None, where: Where, default_name: str) -> Recipe:
    """Combine a validated document with the recipe it extends (if any).

    Merge rules: ``defaults``, ``activations`` and ``shortcuts`` are merged key by key (the
    child's keys win); the child's ``rules`` come before the parent's; ``name`` is the child's
    (else ``default_name``); ``description`` is the child's, else the parent's.

    Raises:
        RecipeError: A rule name used twice, or a rule that binarizes nothing.
    """
    base_defaults = parent.defaults if parent else BinarizeDefaults()
    base_acts = parent.activations if parent else ActivationPolicy()
    base_shortcuts = parent.shortcuts if parent else ShortcutPolicy()
    own_rules = tuple(parts.rules or ())
    rules = own_rules + (parent.rules if parent else ())
    recipe = Recipe(
        name=parts.name or default_name,
        description=(
            parts.description
            if parts.description is not None
            else (parent.description if parent else "")
        ),
        schema_version=parts.schema_version,
        rules=rules,
        activations=replace(base_acts, **parts.activations),
        shortcuts=replace(base_shortcuts, **parts.shortcuts),
        defaults=replace(base_defaults, **parts.defaults),
        source=where.source,
    )
    _check_resolved(recipe, len(own_rules), where)
    return recipe


def _check_resolved(recipe: Recipe, n_own: int, where: Where) -> None:
    """Checks that need the merged recipe: unique rule names, something to binarize."""
    seen: dict[str, int] = {}
    for i, rule in enumerate(recipe.rules):
        origin = "" if i < n_own else " (inherited)"
        if rule.name is not None:
            if rule.name in seen:
                raise where.error(
                    f"rules[{i}].name",
                    f"rule name {rule.name!r}{origin} is already used by rules[{seen[rule.name]}]"
                    " (a recipe's own rules come before the ones it extends)",
                    allowed="unique rule names (decisions record which rule decided)",
                    fix="rename the rule",
                )
            seen[rule.name] = i
        if rule.action == "binarize":
            _, options = resolve_options(rule, recipe.defaults)
            if not (options["binarize_activations"] or options["binarize_weights"]):
                raise where.error(
                    f"rules[{i}]",
                    f"rule {rule_label(rule, i)}{origin} binarizes nothing: with the recipe "
                    "defaults, binarize_activations and binarize_weights are both false",
                    allowed="at least one of binarize_activations / binarize_weights true",
                    fix="set one of them true in 'defaults' or the rule's 'options', or use "
                    "'action: float'",
                )
