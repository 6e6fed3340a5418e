"""Model families: one adapter per family (timm, torchvision, plain ``nn.Module``; mmdet is
registered by ``autobin.integrations.mmdet``), found through one table.

Adding a family is one module (a :class:`ModelFamily` subclass) and one
:func:`register_family` call.
"""

from .base import ModelFamily
from .registry import (
    FAMILY_PLUGINS,
    UnknownFamilyError,
    families,
    family_for_library,
    family_of,
    known_libraries,
    register_family,
    unregister_family,
)
from .timm import TimmFamily
from .torchvision import TorchvisionFamily

register_family(TorchvisionFamily())
register_family(TimmFamily())

__all__ = [
    "FAMILY_PLUGINS",
    "ModelFamily",
    "TimmFamily",
    "TorchvisionFamily",
    "UnknownFamilyError",
    "families",
    "family_for_library",
    "family_of",
    "known_libraries",
    "register_family",
    "unregister_family",
]
