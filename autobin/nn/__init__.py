"""Layer 2 of autobin: binary layers, Maxout and the Bi-Real shortcut.

Public: :class:`AdaBinConv2d`, :class:`AdaBinLinear`, :class:`Maxout`, the baselines
:class:`SignConv2d`/:class:`SignLinear` (BNN) and :class:`XnorConv2d`/:class:`XnorLinear`
(XNOR-Net), their common bases :class:`BinaryConv2d`/:class:`BinaryLinear`/:class:`BinaryLayer`,
and :class:`BiRealShortcut`.
"""

from .binary import (
    METHODS,
    AdaBinConv2d,
    AdaBinLinear,
    BinaryConv2d,
    BinaryLayer,
    BinaryLinear,
    SignConv2d,
    SignLinear,
    XnorConv2d,
    XnorLinear,
    check_method,
)
from .maxout import Maxout
from .shortcut import BiRealShortcut

__all__ = [
    "METHODS",
    "AdaBinConv2d",
    "AdaBinLinear",
    "BiRealShortcut",
    "BinaryConv2d",
    "BinaryLayer",
    "BinaryLinear",
    "Maxout",
    "SignConv2d",
    "SignLinear",
    "XnorConv2d",
    "XnorLinear",
    "check_method",
]
