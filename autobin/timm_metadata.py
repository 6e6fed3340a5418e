"""timm's metadata on a model (``pretrained_cfg``), read in one place.

The timm model family (:mod:`autobin.graph.families.timm`), the zoo and the training outputs
read it through :func:`timm_config`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn


def timm_config(model: nn.Module | None) -> dict[str, Any]:
    """The model's ``pretrained_cfg`` (or ``default_cfg``): the one that names an architecture,
    else the first mapping found (a model written in timm's style without a registry name)."""
    found: dict[str, Any] = {}
    for attr in ("pretrained_cfg", "default_cfg"):
        cfg = getattr(model, attr, None)
        if isinstance(cfg, Mapping) and isinstance(cfg.get("architecture"), str):
            return dict(cfg)
        if isinstance(cfg, Mapping) and not found:
            found = dict(cfg)
    return found


def timm_architecture(model: nn.Module | None) -> str | None:
    """The timm architecture name a model records (``pretrained_cfg['architecture']``)."""
    arch = timm_config(model).get("architecture")
    return arch if isinstance(arch, str) else None


__all__ = ["timm_architecture", "timm_config"]
