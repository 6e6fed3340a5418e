"""Zoo support for binarized detectors: the mmdet config is embedded instead of a timm name.

A binarized detector carries ``autobin_architecture = {"library": "mmdet", "name": <type>,
"kwargs": {}, "config": <the float detector's model config>}``; :func:`autobin.zoo.publish`
stores it in ``config.json`` and :func:`autobin.zoo.load` rebuilds the detector with
:func:`rebuild_detector` (build the float detector from the embedded config, binarize it with
the embedded recipe, then load the packed weights).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ...recipes import Recipe
from ...zoo import ZooFormatError, register_rebuild
from .binarize import binarize_detector
from .build import architecture, build_float_detector, model_config_from_text

LIBRARY = "mmdet"


def rebuild_detector(config: Mapping[str, Any]) -> nn.Module:
    """Rebuild the binarized (not yet loaded) detector a zoo entry describes."""
    arch = config["architecture"]
    if arch.get("library") != LIBRARY or not isinstance(arch.get("config"), str):
        raise ZooFormatError(
            f"entry {config.get('name')!r}: architecture must be library 'mmdet' with the "
            "detector's model config (Python config text) under 'config'"
        )
    if config.get("recipe") is None:
        raise ZooFormatError(f"entry {config.get('name')!r} embeds no recipe to rebuild with")
    recipe = Recipe.from_dict(config["recipe"], source=f"config.json of {config.get('name')!r}")
    source = f"zoo entry {config.get('name')!r}"
    detector = build_float_detector(model_config_from_text(arch["config"], source), source)
    size = config.get("input_size")
    input_size = tuple(size[-2:]) if size else None
    return binarize_detector(detector, recipe, input_size=input_size, inplace=True)


def register() -> None:
    """Make :func:`autobin.zoo.load` rebuild ``mmdet`` entries with :func:`rebuild_detector`."""
    register_rebuild(LIBRARY, rebuild_detector)


__all__ = ["LIBRARY", "architecture", "rebuild_detector", "register"]
