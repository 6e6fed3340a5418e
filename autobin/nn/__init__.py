"""Layer 2 of autobin: binary layers, Maxout and the Bi-Real shortcut.

One class per method and layer kind, each an ordinary subclass of ``nn.Conv2d`` / ``nn.Linear``
registered in :data:`METHODS`: :class:`AdaBinConv2d`/:class:`AdaBinLinear` (AdaBin),
:class:`SignConv2d`/:class:`SignLinear` (BNN) and :class:`XnorConv2d`/:class:`XnorLinear`
(XNOR-Net), with their abstract bases :class:`BinaryConv2d`/:class:`BinaryLinear`/
:class:`BinaryLayer`; :class:`Maxout` and :class:`BiRealShortcut`.
"""

from .adabin import AdaBinConv2d, AdaBinLinear
from .binary import BinaryConv2d, BinaryLayer, BinaryLinear
from .maxout import Maxout
from .registry import (
    METHODS,
    Method,
    MethodSpec,
    method_descriptions,
    method_spec,
    register_method,
)
from .shortcut import BiRealShortcut
from .sign import SignConv2d, SignLinear
from .xnor import XnorConv2d, XnorLinear

__all__ = [
    "METHODS",
    "AdaBinConv2d",
    "AdaBinLinear",
    "BiRealShortcut",
    "BinaryConv2d",
    "BinaryLayer",
    "BinaryLinear",
    "Maxout",
    "Method",
    "MethodSpec",
    "SignConv2d",
    "SignLinear",
    "XnorConv2d",
    "XnorLinear",
    "method_descriptions",
    "method_spec",
    "register_method",
]
