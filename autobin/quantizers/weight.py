"""Weight binarizers: AdaBin equalization and the BNN / XNOR-Net baselines.

All functions take a latent float weight of shape ``(O, ...)`` (a conv's ``(O, C_in/groups, kh,
kw)`` or a linear's ``(O, I)``) and binarize each output channel ``o`` over its
``n = (C_in/groups) * kh * kw`` entries.
"""

from __future__ import annotations

import torch

from ..errors import check_choice
from .sign import WEIGHT_ESTIMATORS, sign_clipped_ste, two_level


def _channel_dims(w: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(1, w.dim()))


def _centered_stats(w: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row ``(alpha, beta, centered)`` of ``w`` viewed as ``(O, n)``; rows keep dim 1.

    ``centered = W - beta`` with ``-0.0`` turned into ``+0.0`` (so the sign of ``centered`` is
    ``sgn(u)`` with ``sgn(0) = +1``), ``alpha = max(sqrt(sum(centered^2)/n), eps)``: the
    population standard deviation, floored at ``eps`` only for degenerate channels (ADABIN.md
    section 2; an added ``+ eps`` under the root would shift well-conditioned channels). The one
    place these statistics are computed, so training, freezing and packing agree bit for bit.
    """
    beta = w.reshape(w.shape[0], -1).mean(dim=1, keepdim=True)
    centered = _centered(w, beta)
    norm = torch.linalg.vector_norm(centered, dim=1, keepdim=True)
    alpha = torch.sqrt(norm.square() / centered.shape[1]).clamp_min(eps)
    return alpha, beta, centered


def _centered(w: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """``W - beta`` viewed as ``(O, n)``, with ``-0.0`` turned into ``+0.0``."""
    return (w.reshape(w.shape[0], -1) - beta).add_(0.0)


def adabin_weight_set(w: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """AdaBin's per-channel binary set of a weight, ``(alpha_w, beta_w)``, kept broadcastable.

    ``beta_w[o] = mean(W[o])`` and ``alpha_w[o] = max(sqrt(mean((W[o] - beta_w[o])^2)), eps)``
    (the population standard deviation, divisor ``n``; ``eps`` is a floor for degenerate
    channels, never an added term). Not detached: gradients flow through both.
    The binary values of channel ``o`` are ``{beta_w - alpha_w, beta_w + alpha_w}``.
    """
    alpha, beta, _ = _centered_stats(w, eps)
    shape = (-1,) + (1,) * (w.dim() - 1)
    return alpha.reshape(shape), beta.reshape(shape)


def adabin_weight_signs(w: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Boolean signs of AdaBin's binary weight (``True`` for ``+1``), shaped like ``w``."""
    _, _, centered = _centered_stats(w, eps)
    return (centered >= 0).reshape(w.shape)


def _off_floor(g_alpha: torch.Tensor, alpha: torch.Tensor, eps: float) -> torch.Tensor:
    """``g_alpha`` with the channels whose ``alpha`` is the constant ``eps`` floor zeroed."""
    return g_alpha.masked_fill_(alpha <= eps, 0.0)


class _AdaBinWeight(torch.autograd.Function):
    """Fused AdaBin weight binarizer: a few passes forward, closed-form backward.

    With ``g = dL/dWb``, ``D = d sgn/du`` (1 for ste), ``s = sgn(u)`` and ``n`` entries per
    channel, the chain rule through ``Wb = alpha*s + beta``, ``u = (W - beta)/alpha``,
    ``beta = mean(W)`` and ``alpha = max(sqrt(var_pop(W)), eps)`` gives per channel
    ``g_alpha = sum(g*(s - D*u))``, ``g_beta = sum(g*(1 - D))`` and
    ``dL/dW = g*D + (g_beta + g_alpha*u)/n`` (``d alpha/dW = u/n``: the path through beta
    cancels because ``sum(W - beta) = 0``). Where ``alpha`` sits on its ``eps`` floor it is a
    constant, so ``g_alpha`` does not reach ``W`` there.
    """

    @staticmethod
    def forward(ctx, w, ede: bool, t: float, k: float, eps: float):
        alpha, beta, centered = _centered_stats(w, eps)
        # the latent weight (a parameter, kept anyway) and the per-channel statistics, not a
        # weight-sized ``centered`` copy: backward recomputes it
        ctx.save_for_backward(w, beta, alpha)
        ctx.ede, ctx.t, ctx.k, ctx.eps = ede, t, k, eps
        # alpha*sgn(u) + beta, bit-identical: alpha*(+-1) + beta == beta +- alpha
        return two_level(alpha, centered, beta).reshape(w.shape)

    @staticmethod
    def backward(ctx, grad):
        w, beta, alpha = ctx.saved_tensors
        centered = _centered(w, beta)
        g = grad.reshape(centered.shape)
        n = centered.shape[1]
        one = torch.ones((), dtype=g.dtype, device=g.device)
        s = torch.copysign(one.expand_as(g), centered)
        if ctx.ede:
            u = centered / alpha
            # g * k t (1 - tanh(t u)^2) = g * 4 k t sig(2 t u) (1 - sig(2 t u)), in place
            # (sigmoid is about 3x cheaper than tanh on the CPU)
            gd = torch.mul(u, 2.0 * ctx.t).sigmoid_()
            gd.addcmul_(gd, gd, value=-1.0).mul_(4.0 * ctx.k * ctx.t).mul_(g)
            g_alpha = torch.linalg.vecdot(g, s, dim=1) - torch.linalg.vecdot(gd, u, dim=1)
            g_alpha = _off_floor(g_alpha, alpha[:, 0], ctx.eps)
            g_beta = g.sum(dim=1) - gd.sum(dim=1)
            grad_w = gd.addcmul_(u, (g_alpha / n).unsqueeze(1)).add_((g_beta / n).unsqueeze(1))
        else:  # D = 1: g_beta = 0, and sum(g*u) = sum(g*centered)/alpha
            a = alpha[:, 0]
            g_alpha = torch.linalg.vecdot(g, s, dim=1) - torch.linalg.vecdot(g, centered, dim=1) / a
            g_alpha = _off_floor(g_alpha, a, ctx.eps)
            grad_w = torch.addcmul(g, centered, (g_alpha / (n * a)).unsqueeze(1))
        return grad_w.reshape(grad.shape), None, None, None, None


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

        beta_w = mean(W[o]),  alpha_w = max(sqrt(var_pop(W[o])), eps)
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
        eps: floor of ``alpha_w`` (degenerate channels only), so ``alpha_w > 0``.
    """
    check_choice(estimator, WEIGHT_ESTIMATORS, "weight estimator")
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
