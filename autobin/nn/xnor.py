"""XNOR-Net baseline layers (Rastegari et al., "XNOR-Net", ECCV 2016)."""

from __future__ import annotations

import torch

from ..quantizers import xnor_weight, xnor_weight_set
from .binary import BinaryConv2d, BinaryLinear
from .registry import MethodSpec, register_method
from .sign import SignBinarizers


class XnorBinarizers(SignBinarizers):
    """``Wb = mean|W[o]| * sgn(W)`` per output channel, ``ab = sgn(x)``; clipped
    straight-through backward, the weight gradient also flowing through the scale. Mixed into
    :class:`XnorConv2d` and :class:`XnorLinear`."""

    method = "xnor"

    def _binarize_weight(self) -> torch.Tensor:
        return xnor_weight(self.weight)

    def _latent_weight_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        return xnor_weight_set(self.weight)


class XnorConv2d(XnorBinarizers, BinaryConv2d):
    """XNOR-Net baseline conv: ``conv2d(sgn(x), mean|W[o]| * sgn(W))``."""


class XnorLinear(XnorBinarizers, BinaryLinear):
    """XNOR-Net baseline linear: ``sgn(x) @ (mean|W[o]| * sgn(W))^T``."""


register_method(
    MethodSpec("xnor", XnorConv2d, XnorLinear, "XNOR-Net: mean|W[o]| * sgn(W) and sgn(x)")
)
