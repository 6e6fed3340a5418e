"""Weight binarizers: AdaBin equalization and the BNN / XNOR-Net baselines.

All functions take a latent float weight of shape ``(O, ...)`` (a conv's ``(O, C_in/groups, kh,
kw)`` or a linear's ``(O, I)``) and binarize each output channel ``o`` over its
``n = (C_in/groups) * kh * kw`` entries.
"""

from __future__ import annotations

import torch

from .sign import check_weight_estimator, sign_clipped_ste, sign_ede, sign_ste


def _channel_dims(w: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(1, w.dim()))


def adabin_weight_set(w: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """AdaBin's per-channel binary set of a weight, ``(alpha_w, beta_w)``, kept broadcastable.

    ``beta_w[o] = mean(W[o])`` and ``alpha_w[o] = sqrt(mean((W[o] - beta_w[o])^2) + eps)`` (the
    population standard deviation, divisor ``n``). Not detached: gradients flow through both.
    The binary values of channel ``o`` are ``{beta_w - alpha_w, beta_w + alpha_w}``.
    """
    dims = _channel_dims(w)
    beta = w.mean(dim=dims, keepdim=True)
    alpha = torch.sqrt(w.var(dim=dims, keepdim=True, correction=0) + eps)
    return alpha, beta


def adabin_weight(
    w: torch.Tensor,
    estimator: str = "ste",
    *,
    t: float = 0.1,
    k: float = 10.0,
    eps: float = 1e-5,
) -> torch.Tensor:
    """AdaBin weight equalization (Tu et al., "AdaBin", ECCV 2022, Eq. 7-9).

    Forward::

        beta_w = mean(W[o]),  alpha_w = sqrt(var_pop(W[o]) + eps)
        u      = (W - beta_w) / alpha_w
        Wb     = alpha_w * sgn(u) + beta_w            in {beta_w - alpha_w, beta_w + alpha_w}

    Backward: ``sgn`` uses the chosen estimator (``ste``: identity; ``ede``:
    ``k t (1 - tanh(t u)^2)``); gradients also flow through ``alpha_w`` and ``beta_w``.

    Args:
        w: latent float weight, output channels first.
        estimator: ``"ste"`` or ``"ede"``.
        t: ede temperature (ignored for ste).
        k: ede scale (ignored for ste).
        eps: added to the variance so ``alpha_w > 0``.
    """
    alpha, beta = adabin_weight_set(w, eps)
    u = (w - beta) / alpha
    if estimator == "ste":
        s = sign_ste(u)
    else:
        check_weight_estimator(estimator)
        s = sign_ede(u, t, k)
    return alpha * s + beta


def sign_weight(w: torch.Tensor) -> torch.Tensor:
    """BNN weight binarizer (Hubara et al., NeurIPS 2016): ``Wb = sgn(W)`` in ``{-1, +1}``.

    Backward: clipped straight-through, ``dWb/dW = 1{|W| <= 1}``.
    """
    return sign_clipped_ste(w)


def xnor_weight_set(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """XNOR-Net's per-channel set ``(alpha_w, beta_w) = (mean |W[o]|, 0)``, broadcastable."""
    alpha = w.abs().mean(dim=_channel_dims(w), keepdim=True)
    return alpha, torch.zeros_like(alpha)


def xnor_weight(w: torch.Tensor) -> torch.Tensor:
    """XNOR-Net weight binarizer (Rastegari et al., ECCV 2016): ``Wb = mean|W[o]| * sgn(W)``.

    Backward: clipped straight-through through ``sgn``; the gradient also flows through the
    scale ``mean|W[o]|``.
    """
    alpha, _ = xnor_weight_set(w)
    return alpha * sign_clipped_ste(w)
