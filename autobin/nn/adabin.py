"""AdaBin layers (Tu et al., "AdaBin: Improving Binary Neural Networks with Adaptive Binary
Sets", ECCV 2022): every layer learns its own binary sets {beta - alpha, beta + alpha}."""

from __future__ import annotations

import torch
from torch import nn

from ..quantizers import (
    ADABIN_INPUTS,
    AdaBinInput,
    activation_center,
    adabin_activation,
    adabin_weight,
    adabin_weight_set,
    adabin_weight_signs,
    effective_alpha,
)
from .binary import BinaryConv2d, BinaryLinear
from .registry import MethodSpec, register_method


class AdaBinBinarizers:
    """The AdaBin binarizers; mixed into :class:`AdaBinConv2d` and :class:`AdaBinLinear`.

    Weights, per output channel ``o`` over ``n = (C_in/groups)*kh*kw`` entries::

        beta_w = mean W[o],  alpha_w = max(std_pop W[o], eps)
        Wb     = alpha_w * sgn((W - beta_w) / alpha_w) + beta_w

    Activations, with the learned scalars ``alpha_a`` (``act_alpha``, > 0) and ``beta_a``
    (``act_beta``), ``u = (x - beta_a)/alpha_a``::

        paper form: ab = alpha_a*sgn(u) + beta_a        code form: ab = alpha_a*(sgn(u) + beta_a)

    Backward: weights through ``ste`` or ``ede`` and through ``alpha_w``/``beta_w``; activations
    through Bi-Real's ``max(0, 2 - 2|u|)``.
    """

    method = "adabin"
    scalar_params = ("act_alpha", "act_beta")
    act_alpha: nn.Parameter
    act_beta: nn.Parameter

    def _init_method(self, *, act_alpha_init: float, act_beta_init: float) -> None:
        if not act_alpha_init > 0:
            raise ValueError(
                f"act_alpha_init must be > 0 (it is the half-distance of the activation binary "
                f"set), got {act_alpha_init}; use a positive value such as 1.0"
            )
        kw = {"device": self.weight.device, "dtype": torch.float32}
        self.act_alpha = nn.Parameter(torch.tensor(float(act_alpha_init), **kw))
        self.act_beta = nn.Parameter(torch.tensor(float(act_beta_init), **kw))

    def _binarize_weight(self) -> torch.Tensor:
        return adabin_weight(
            self.weight, self.weight_estimator, t=self.ede_t, k=self.ede_k, eps=self.eps
        )

    def binarize_input(self, x: torch.Tensor) -> torch.Tensor:
        """Binarize the layer input (the fake-quantized activation), differentiable."""
        return adabin_activation(x, self.act_alpha, self.act_beta, self.act_form)

    def _input_binarizer(self) -> tuple[AdaBinInput, tuple[torch.Tensor, torch.Tensor]]:
        return ADABIN_INPUTS[self.act_form], (self.act_alpha, self.act_beta)

    def _latent_weight_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        return adabin_weight_set(self.weight, self.eps)

    def _latent_weight_signs(self) -> torch.Tensor:
        return adabin_weight_signs(self.weight, self.eps)

    @torch.no_grad()
    def activation_binary_set(self) -> tuple[float, float]:
        """``(alpha_a, c_a)``: the input takes the values ``{c_a - alpha_a, c_a + alpha_a}``.

        ``c_a = beta_a`` in the paper form and ``alpha_a * beta_a`` in the code form.
        """
        alpha = effective_alpha(self.act_alpha)
        center = activation_center(alpha, self.act_beta.detach(), self.act_form)
        return float(alpha), float(center)

    @torch.no_grad()
    def input_signs(self, x: torch.Tensor) -> torch.Tensor:
        """Boolean tensor shaped like ``x``: ``True`` where the binarized input is ``+1``."""
        return x >= self.act_beta.detach().to(x.dtype)

    def _describe(self) -> tuple[str, str]:
        return f"adabin({self.weight_estimator})", f"adabin({self.act_form})"


class AdaBinConv2d(AdaBinBinarizers, BinaryConv2d):
    """AdaBin binary convolution: ``y = conv2d(ab, Wb) + bias`` (see :class:`AdaBinBinarizers`).

    Same constructor as ``nn.Conv2d`` plus keyword-only options ``weight_estimator`` (``ste`` |
    ``ede``), ``act_form`` (``paper`` | ``code``), ``act_alpha_init`` (> 0, default 1),
    ``act_beta_init`` (default 0), ``binarize_weights``, ``binarize_activations``, ``eps`` (floor
    of ``alpha_w``) and ``dynamic_same_padding``.
    """


class AdaBinLinear(AdaBinBinarizers, BinaryLinear):
    """AdaBin binary linear layer: ``y = ab @ Wb^T + bias``; each output row is one channel.

    Same constructor as ``nn.Linear`` plus the options of :class:`AdaBinConv2d`.
    """


register_method(
    MethodSpec(
        "adabin",
        AdaBinConv2d,
        AdaBinLinear,
        "AdaBin: learned binary sets {beta - alpha, beta + alpha} per layer",
        uses_act_form=True,
    )
)
