"""Rebuilding a zoo entry's model from its config: the :data:`Rebuild` of each model family.

:func:`family_rebuild` asks the entry's model family (:mod:`autobin.graph.families`: timm,
torchvision, or an integration's such as mmdet, imported on first use) for the float skeleton
its ``architecture`` record describes, and binarizes it with the embedded recipe. Publishing
checks, before writing, that the model can be rebuilt from the config it records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from ..errors import BinarizeError
from ..graph import binarize
from ..graph.families import UnknownFamilyError, family_for_library
from ..recipes import Recipe
from .errors import ZooError, ZooFormatError
from .format import binary_layers

Rebuild = Callable[[Mapping[str, Any]], nn.Module]
"""Builds the binarized, not yet loaded model described by an entry config."""


def family_rebuild(config: Mapping[str, Any]) -> nn.Module:
    """Default :data:`Rebuild`: the family's float skeleton, binarized with the entry's recipe.

    The example input of the graph pass is the family's seeded random batch of the entry's
    ``input_size`` (default: the model's own input shape).

    Raises:
        ZooError: the entry embeds no recipe (pass your own ``rebuild``), or its family is
            not installed.
        ZooFormatError: no family rebuilds the entry's architecture.
    """
    name = config.get("name")
    if config.get("recipe") is None:
        raise ZooError(
            f"entry {name!r} embeds no recipe, so it cannot be rebuilt "
            "automatically; pass rebuild=<function(config) -> binarized nn.Module>"
        )
    family = default_rebuild_family(config)
    try:
        model = family.float_skeleton(config["architecture"])
    except BinarizeError as exc:
        raise ZooFormatError(f"entry {name!r}: {exc}") from exc
    size = config.get("input_size")
    example_inputs = family.example_inputs(model, size) if size else None
    recipe = Recipe.from_dict(config["recipe"], source=f"config.json of {name!r}")
    return binarize(model, recipe, example_inputs=example_inputs)


def default_rebuild_family(config: Mapping[str, Any]):
    """The model family that rebuilds an entry (importing its integration on first use)."""
    library = config["architecture"]["library"]
    try:
        return family_for_library(library)
    except UnknownFamilyError as exc:
        raise ZooError(f"entry {config.get('name')!r}: {exc}") from exc


def default_rebuild(config: Mapping[str, Any]) -> Rebuild:
    """The rebuild for an entry: :func:`family_rebuild` (checks that a family handles it)."""
    default_rebuild_family(config)
    return family_rebuild


def can_rebuild(config: Mapping[str, Any]) -> bool:
    return config.get("recipe") is not None


def check_rebuild_matches(model: nn.Module, config: Mapping[str, Any], rebuild: Rebuild) -> None:
    """Rebuild from ``config`` and check it has ``model``'s state keys, shapes, binary layers."""
    hint = (
        "pass the timm create_model arguments the model was made with as arch_kwargs= (e.g. "
        "{'num_classes': 10, 'in_chans': 1}) and the input size it takes as input_size="
    )
    try:
        rebuilt = rebuild(config)
    except (RuntimeError, BinarizeError) as e:  # e.g. an input the rebuilt model cannot take
        raise ValueError(
            f"the model cannot be rebuilt from architecture {config['architecture']} with input "
            f"size {config.get('input_size')} and its recipe ({e}); {hint}"
        ) from e
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    diff = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
    layers_differ = set(binary_layers(model)) != set(binary_layers(rebuilt))
    if diff or layers_differ:
        shown = [(k, ours.get(k), theirs.get(k)) for k in diff[:5]]
        raise ValueError(
            f"the model cannot be rebuilt from architecture {config['architecture']} and its "
            f"recipe: state entries differ (key, model shape, rebuilt shape): {shown}"
            f"{' ...' if len(diff) > 5 else ''}; {hint}"
        )


__all__ = ["Rebuild", "can_rebuild", "check_rebuild_matches", "default_rebuild", "family_rebuild"]
