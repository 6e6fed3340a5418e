"""Weight binarizers: AdaBin equalization and the BNN / XNOR-Net baselines.

All functions take a latent float weight of shape ``(O, ...)`` (a conv's ``(O, C_in/groups, kh,
kw)`` or a linear's ``(O, I)``) and binarize each output channel ``o`` over its
``n = (C_in/groups) * kh * kw`` entries.
"""

from __future__ import annotations

import torch

from .sign import check_weight_estimator, ede_derivative, sign_clipped_ste


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


class _AdaBinWeight(torch.autograd.Function):
    """Fused AdaBin weight binarizer: three passes forward, closed-form backward.

    With ``g = dL/dWb``, ``D = d sgn/du`` (1 for ste), ``s = sgn(u)`` and ``n`` entries per
    channel, the chain rule through ``Wb = alpha*s + beta``, ``u = (W - beta)/alpha``,
    ``beta = mean(W)`` and ``alpha = sqrt(var_pop(W) + eps)`` gives per channel
    ``g_alpha = sum(g*(s - D*u))``, ``g_beta = sum(g*(1 - D))`` and
    ``dL/dW = g*D + (g_beta + g_alpha*u)/n`` (``d alpha/dW = u/n``: the path through beta
    cancels because ``sum(W - beta) = 0``).
    """

    @staticmethod
    def forward(ctx, w, ede: bool, t: float, k: float, eps: float):
        alpha, beta = adabin_weight_set(w, eps)
        u = (w - beta) / alpha
        ctx.save_for_backward(u)
        ctx.ede, ctx.t, ctx.k = ede, t, k
        # alpha*sgn(u) + beta, written so it is bit-identical: alpha*(+-1) + beta == beta +- alpha
        return torch.where(u >= 0, beta + alpha, beta - alpha)

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        dims = _channel_dims(u)
        n = u[0].numel()
        s = torch.where(u >= 0, 1.0, -1.0).to(u.dtype)
        if ctx.ede:
            d = ede_derivative(u, ctx.t, ctx.k)
            gd = grad * d
            g_alpha = (grad * s - gd * u).sum(dim=dims, keepdim=True)
            g_beta = (grad - gd).sum(dim=dims, keepdim=True)
            return gd + (g_beta + g_alpha * u) / n, None, None, None, None
        g_alpha = (grad * (s - u)).sum(dim=dims, keepdim=True)
        return grad + g_alpha * u / n, None, None, None, None


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
    ``k t (1 - tanh(t u)^2)``); gradients also flow through ``alpha_w`` and ``beta_w``
    (computed in closed form by one fused autograd function).

    Args:
        w: latent float weight, output channels first.
        estimator: ``"ste"`` or ``"ede"``.
        t: ede temperature (ignored for ste).
        k: ede scale (ignored for ste).
        eps: added to the variance so ``alpha_w > 0``.
    """
    check_weight_estimator(estimator)
    return _AdaBinWeight.apply(w, estimator == "ede", float(t), float(k), float(eps))


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
