"""BNN baseline layers (Hubara et al., "Binarized Neural Networks", NeurIPS 2016)."""

from __future__ import annotations

import torch

from ..quantizers import SIGN_INPUT, SignInput, sgn, sign_activation, sign_weight
from .binary import BinaryConv2d, BinaryLinear
from .registry import MethodSpec, register_method


class SignBinarizers:
    """``Wb = sgn(W)`` and ``ab = sgn(x)`` in ``{-1, +1}``; clipped straight-through backward
    ``1{|.| <= 1}`` for both. Mixed into :class:`SignConv2d` and :class:`SignLinear`."""

    method = "sign"

    def _init_method(self, *, act_alpha_init: float, act_beta_init: float) -> None:
        del act_alpha_init, act_beta_init  # no learned activation set

    def _binarize_weight(self) -> torch.Tensor:
        return sign_weight(self.weight)

    def binarize_input(self, x: torch.Tensor) -> torch.Tensor:
        """Binarize the layer input (the fake-quantized activation), differentiable."""
        return sign_activation(x)

    def _input_binarizer(self) -> tuple[SignInput, tuple[()]]:
        return SIGN_INPUT, ()

    def _latent_weight_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.weight
        alpha = torch.ones((w.shape[0],), dtype=w.dtype, device=w.device)
        return alpha, torch.zeros_like(alpha)

    def _latent_weight_signs(self) -> torch.Tensor:
        return self.weight >= 0

    def activation_binary_set(self) -> tuple[float, float]:
        """``(alpha_a, c_a) = (1, 0)``: the input takes the values ``{-1, +1}``."""
        return 1.0, 0.0

    @torch.no_grad()
    def input_signs(self, x: torch.Tensor) -> torch.Tensor:
        """Boolean tensor shaped like ``x``: ``True`` where the binarized input is ``+1``."""
        return sgn(x) > 0

    def _describe(self) -> tuple[str, str]:
        return self.method, "sign"


class SignConv2d(SignBinarizers, BinaryConv2d):
    """BNN baseline conv: ``conv2d(sgn(x), sgn(W))``, constructor as ``nn.Conv2d``."""


class SignLinear(SignBinarizers, BinaryLinear):
    """BNN baseline linear: ``sgn(x) @ sgn(W)^T``, constructor as ``nn.Linear``."""


register_method(MethodSpec("sign", SignConv2d, SignLinear, "BNN: sgn(W) and sgn(x) in {-1, +1}"))
