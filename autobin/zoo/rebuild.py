"""Rebuilding a zoo entry's model from its config: the :data:`Rebuild` registry.

:func:`timm_rebuild` rebuilds timm architectures; integrations register their own library with
:func:`register_rebuild` (``mmdet`` is imported on first use, see :data:`REBUILD_PLUGINS`), and
:func:`default_rebuild` picks the rebuild for an entry. Publishing checks, before writing, that
the model can be rebuilt from the config it records.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ..errors import BinarizeError
from ..graph import binarize
from ..recipes import Recipe
from .errors import ZooError, ZooFormatError
from .format import binary_layers

Rebuild = Callable[[Mapping[str, Any]], nn.Module]
"""Builds the binarized, not yet loaded model described by an entry config."""

_REBUILDS: dict[str, Rebuild] = {}
REBUILD_PLUGINS: dict[str, str] = {"mmdet": "autobin.integrations.mmdet"}
"""Architecture libraries rebuilt by an integration, and the module that registers it on import
(:func:`register_rebuild`); the zoo imports it by name the first time such an entry loads."""


def timm_rebuild(config: Mapping[str, Any]) -> nn.Module:
    """Default :data:`Rebuild`: ``autobin.binarize(timm.create_model(...), recipe)``.

    The example input of the graph pass is a seeded random batch of the entry's
    ``input_size`` (default: the timm model's ``pretrained_cfg['input_size']``).

    Raises:
        ZooError: the entry embeds no recipe (pass your own ``rebuild``).
    """
    arch = config["architecture"]
    if arch["library"] != "timm":
        raise ZooFormatError(f"cannot rebuild architecture library {arch['library']!r}")
    if config.get("recipe") is None:
        raise ZooError(
            f"entry {config.get('name')!r} embeds no recipe, so it cannot be rebuilt "
            "automatically; pass rebuild=<function(config) -> binarized nn.Module>"
        )
    import timm

    from .. import models  # noqa: F401  registers autobin's CIFAR architectures in timm

    if not timm.is_model(arch["name"]):
        raise ZooFormatError(
            f"entry {config.get('name')!r}: {arch['name']!r} is not a timm architecture (see "
            "timm.list_models()); for a model built by hand pass rebuild=<function(config) -> "
            "binarized nn.Module>"
        )
    model = timm.create_model(arch["name"], pretrained=False, **arch["kwargs"])
    example_inputs = None
    if config.get("input_size"):
        gen = torch.Generator().manual_seed(0)
        example_inputs = (torch.randn((2, *config["input_size"]), generator=gen),)
    recipe = Recipe.from_dict(config["recipe"], source=f"config.json of {config.get('name')!r}")
    return binarize(model, recipe, example_inputs=example_inputs)


def register_rebuild(library: str, rebuild: Rebuild) -> None:
    """Rebuild entries whose ``architecture.library`` is ``library`` with ``rebuild``."""
    _REBUILDS[library] = rebuild


def default_rebuild(config: Mapping[str, Any]) -> Rebuild:
    """The rebuild for an entry's architecture library (timm, or an integration's)."""
    library = config["architecture"]["library"]
    if library == "timm":
        return timm_rebuild
    if library not in _REBUILDS and library in REBUILD_PLUGINS:
        try:
            importlib.import_module(REBUILD_PLUGINS[library])
        except ImportError as exc:
            raise ZooError(
                f"entry {config.get('name')!r} is an {library} model; rebuilding it needs "
                f"{REBUILD_PLUGINS[library]} ({exc}); install it with: pip install "
                f"'autobin[{library}]'"
            ) from exc
    if library not in _REBUILDS:
        raise ZooFormatError(f"cannot rebuild architecture library {library!r}")
    return _REBUILDS[library]


def _default_rebuild_available(config: Mapping[str, Any]) -> bool:
    return config.get("recipe") is not None and (
        config["architecture"]["library"] in ("timm", *REBUILD_PLUGINS)
    )


def _check_rebuild(model: nn.Module, config: Mapping[str, Any], rebuild: Rebuild) -> None:
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


__all__ = [
    "REBUILD_PLUGINS",
    "Rebuild",
    "default_rebuild",
    "register_rebuild",
    "timm_rebuild",
]
