"""The family table: which :class:`~.base.ModelFamily` a model belongs to.

Families are tried newest registration first; the plain family (any ``nn.Module``) is the
fallback. Integrations register theirs on import (``autobin.integrations.mmdet``); the zoo
imports a family's module by its library name on first use (:data:`FAMILY_PLUGINS`).
"""

from __future__ import annotations

import importlib

from torch import nn

from ...errors import AutobinError
from .base import ModelFamily

_FAMILIES: list[ModelFamily] = []
_PLAIN = ModelFamily()

FAMILY_PLUGINS: dict[str, str] = {"mmdet": "autobin.integrations.mmdet"}
"""Families registered by an integration module, by zoo library name."""


class UnknownFamilyError(AutobinError, LookupError):
    """No registered family has the asked-for name or zoo library."""


def register_family(family: ModelFamily) -> ModelFamily:
    """Add ``family`` to the table (replacing one of the same name); it is tried first."""
    _FAMILIES[:] = [f for f in _FAMILIES if f.name != family.name]
    _FAMILIES.insert(0, family)
    return family


def unregister_family(name: str) -> None:
    """Remove the family called ``name`` from the table (no error if absent)."""
    _FAMILIES[:] = [f for f in _FAMILIES if f.name != name]


def families() -> list[ModelFamily]:
    """The registered families in the order they are tried, then the plain fallback."""
    return [*_FAMILIES, _PLAIN]


def family_of(model: nn.Module) -> ModelFamily:
    """The family ``model`` belongs to (the plain family if no other matches)."""
    return next(f for f in families() if f.matches(model))


def known_libraries() -> tuple[str, ...]:
    """The zoo ``architecture.library`` values some family rebuilds (registered or plugin)."""
    return tuple(dict.fromkeys([*(f.library for f in _FAMILIES if f.library), *FAMILY_PLUGINS]))


def family_for_library(library: str) -> ModelFamily:
    """The family that rebuilds zoo entries of ``architecture.library`` ``library``.

    Raises:
        UnknownFamilyError: no family (and no integration) handles ``library``.
    """
    found = next((f for f in _FAMILIES if f.library == library), None)
    if found is None and library in FAMILY_PLUGINS:
        try:
            importlib.import_module(FAMILY_PLUGINS[library])
        except ImportError as exc:
            raise UnknownFamilyError(
                f"{library} models need {FAMILY_PLUGINS[library]} ({exc}); install it with: "
                f"pip install 'autobin[{library}]'"
            ) from exc
        found = next((f for f in _FAMILIES if f.library == library), None)
    if found is None:
        known = sorted({f.library for f in _FAMILIES if f.library} | set(FAMILY_PLUGINS))
        raise UnknownFamilyError(
            f"no model family rebuilds architecture library {library!r}; known: {known}"
        )
    return found


__all__ = [
    "FAMILY_PLUGINS",
    "UnknownFamilyError",
    "families",
    "family_for_library",
    "family_of",
    "known_libraries",
    "register_family",
    "unregister_family",
]
