"""The searched recipe: an ordinary recipe YAML that extends the base recipe.

One named rule per layer the search decided differently from what ``extends`` alone would give
or chose to keep float: ``search-float-<layer>`` for every chosen float layer and
``search-binary-<layer>`` for every layer the base keeps float that the search binarizes. Each
rule matches its layer's exact name and carries a comment with the measured sensitivity and
cost. The file is checked by loading it back before it replaces anything (written atomically).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from ..atomic import atomic_write, fsync_dir
from ..recipes import Match, Recipe, RecipeLike, Rule, list_recipes, load_recipe
from ..recipes.loader import builtin_dir
from .budget import BUDGETS, Budget, format_value
from .configurations import BINARY_RULE, FLOAT_RULE, name_pattern, with_rules
from .errors import SearchError
from .sensitivity import LayerSensitivity


def cost_text(budget: Budget, cost: float, macs: int) -> str:
    """``2,359,296 MACs; keeping it float costs 2,359,296 MACs (max_float_macs)``."""
    unit = BUDGETS[budget.kind][3]
    amount = format_value(budget.kind, cost) + (f" {unit}" if unit else " of the binary share")
    return f"{macs:,} MACs; keeping it float costs {amount} ({budget.kind})"


def layer_rules(
    layers: Sequence[LayerSensitivity],
    float_names: Sequence[str],
    budget: Budget,
    costs: dict[str, float],
    loss_name: str = "KL",
) -> list[tuple[str, Rule]]:
    """(comment, rule) for every chosen float layer and every base-float layer made binary."""
    chosen = set(float_names)
    out = []
    for layer in layers:
        c = layer.candidate
        measured = (
            f"{c.name} ({c.type_name}): {loss_name} only-binary {layer.only_binary:.4g} (damage "
            f"{layer.damage:+.4g}), {loss_name} only-float {layer.only_float:.4g} (gain "
            f"{layer.gain:+.4g}), importance {layer.importance:.4g}; "
            + cost_text(budget, costs[c.name], c.macs)
        )
        if c.name in chosen:
            rule = Rule(
                Match(names=(name_pattern(c.name),)),
                "float",
                name=f"{FLOAT_RULE}-{c.name}",
                reason=f"autobin search: stays float (importance {layer.importance:.3g}, "
                f"{c.macs:,} MACs)",
            )
        elif not c.base_binary:
            rule = Rule(
                Match(names=(name_pattern(c.name),)),
                "binarize",
                name=f"{BINARY_RULE}-{c.name}",
                reason=f"autobin search: binarized (importance {layer.importance:.3g}; the base "
                f"rule {c.base_rule!r} kept it float)",
            )
        else:
            continue
        out.append((measured, rule))
    return out


def base_reference(recipe: RecipeLike, base: Recipe, output: Path) -> str | None:
    """What the written file ``extends``: a built-in name, a path relative to ``output``'s
    folder, or None when the base exists only in memory (then the file is self-contained)."""
    if isinstance(recipe, str) and recipe in list_recipes() and not recipe.endswith(".yaml"):
        return recipe
    source = base.source
    if isinstance(recipe, (str, os.PathLike)):
        source = os.fspath(recipe)
    if not source or source == "<dict>" or not Path(source).is_file():
        return None
    path = Path(source).resolve()
    if path.parent == builtin_dir().resolve() and path.stem in list_recipes():
        return path.stem
    return os.path.relpath(path, output.resolve().parent)


def recipe_text(
    name: str,
    description: str,
    header: Sequence[str],
    rules: Sequence[tuple[str, Rule]],
    base: Recipe,
    extends: str | None,
) -> str:
    """The YAML text of the searched recipe, comments included."""
    lines = [f"# {h}" for h in header]
    doc: dict[str, Any] = {"schema_version": 1, "name": name}
    if extends is not None:
        doc["extends"] = extends
    doc["description"] = description
    if extends is None:  # self-contained: the base's settings, written out
        full = base.to_dict()
        for key in ("defaults", "activations", "shortcuts"):
            doc[key] = full[key]
    lines.append(yaml.safe_dump(doc, sort_keys=False, width=100).rstrip())
    lines.append("rules:")
    if extends is not None:
        lines.append("  # the base recipe's rules follow these (extends)")
    for comment, rule in rules:
        lines.append(f"  # {comment}")
        lines.append(_item(rule.to_dict()))
    if extends is None:
        lines.append("  # the base recipe's rules")
        lines += [_item(rule.to_dict()) for rule in base.rules]
    return "\n".join(lines) + "\n"


def _item(data: dict[str, Any]) -> str:
    text = yaml.safe_dump([data], sort_keys=False, width=100, default_flow_style=None)
    return "\n".join("  " + line for line in text.rstrip().splitlines())


def searched_recipe(
    base: Recipe,
    layers: Sequence[LayerSensitivity],
    float_names: Sequence[str],
    budget: Budget,
    costs: dict[str, float],
    name: str,
    model_name: str,
) -> Recipe:
    """The searched recipe as a :class:`Recipe` (what the file loads as), without a file."""
    rules = layer_rules(layers, float_names, budget, costs)
    recipe = with_rules(base, tuple(r for _, r in rules), name)
    description = (
        f"autobin search for {model_name}: {base.name} with the float layers chosen by measured "
        f"sensitivity under {budget.describe()}"
    )
    return dataclasses.replace(recipe, description=description)


def write_recipe(path: Path, text: str, expected: Recipe) -> Recipe:
    """Write ``text`` to ``path`` atomically after checking that it loads as ``expected``.

    The text is first written to a hidden file beside ``path`` (so relative ``extends`` paths
    resolve the same), loaded and compared rule by rule; only then does it replace ``path``.
    Interrupted at any point, ``path`` is either untouched or complete.

    Raises:
        SearchError: the written file does not load back with the same rules (a bug).
    """
    path = Path(path)
    check = path.with_name(f".{path.name}.check.yaml")
    try:
        atomic_write(check, lambda fh: fh.write(text.encode("utf-8")))
        loaded = load_recipe(check)
        if loaded.rules != expected.rules or loaded.defaults != expected.defaults:
            raise SearchError(
                f"the searched recipe for {path} does not load back with the rules it was "
                "written from; this is a bug in autobin search, please report it"
            )
        os.replace(check, path)
        fsync_dir(path.parent)
    finally:
        with contextlib.suppress(OSError):
            check.unlink()
    return load_recipe(path)


__all__ = [
    "base_reference",
    "cost_text",
    "layer_rules",
    "recipe_text",
    "searched_recipe",
    "write_recipe",
]
