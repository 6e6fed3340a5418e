"""Activation binarizers: AdaBin's learned binary set and the sign baseline.

The AdaBin binarizer is one fused autograd function: forward needs a single comparison, and the
backward pass computes the gradients of ``x``, ``alpha_a`` and ``beta_a`` in closed form from the
saved input, so binarizing an activation costs about one elementwise pass each way.
"""

from __future__ import annotations

from typing import Literal

import torch

from .sign import sgn, sign_clipped_ste

ActForm = Literal["paper", "code"]
ACT_FORMS: tuple[str, ...] = ("paper", "code")
MIN_ALPHA = 1e-4


def check_act_form(form: str) -> str:
    """Return ``form`` if valid, else raise a ValueError listing the valid forms."""
    if form not in ACT_FORMS:
        raise ValueError(
            f"unknown activation form {form!r}; valid choices are {list(ACT_FORMS)} "
            "('paper': alpha*sgn(u)+beta, the default; 'code': alpha*(sgn(u)+beta), the form of "
            "the authors' released code, for reproducing their checkpoints)"
        )
    return form


def activation_center(alpha: torch.Tensor, beta: torch.Tensor, form: str) -> torch.Tensor:
    """Center ``c_a`` of the activation set ``{c_a - alpha_a, c_a + alpha_a}``.

    ``c_a = beta_a`` in the paper form and ``alpha_a * beta_a`` in the released-code form.
    """
    return beta if form == "paper" else alpha * beta


def effective_alpha(alpha: torch.Tensor) -> torch.Tensor:
    """``alpha_a`` as used in the forward pass: clamped to at least ``MIN_ALPHA`` (> 0)."""
    return alpha.detach().clamp_min(MIN_ALPHA)


class _AdaBinActivation(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha, beta, code_form: bool):
        a = alpha.detach().clamp_min(MIN_ALPHA).to(x.dtype)
        b = beta.detach().to(x.dtype)
        ctx.save_for_backward(x, a, b)
        ctx.code_form = code_form
        ctx.param_dtypes = (alpha.dtype, beta.dtype)
        c = a * b if code_form else b
        # u = (x - beta)/alpha >= 0  <=>  x >= beta   (alpha > 0), and sgn(0) = +1.
        return torch.where(x >= b, c + a, c - a)

    @staticmethod
    def backward(ctx, grad):
        x, a, b = ctx.saved_tensors
        u = (x - b) / a
        d = (2.0 - 2.0 * u.abs()).clamp_min_(0.0)  # Bi-Real: d sgn/du
        grad_x = grad * d if ctx.needs_input_grad[0] else None
        grad_alpha = grad_beta = None
        gd = grad * d
        # Sums accumulate in at least float32 (float64 stays float64).
        acc = torch.promote_types(grad.dtype, torch.float32)
        if ctx.needs_input_grad[1]:
            s = torch.where(u >= 0, 1.0, -1.0).to(grad.dtype)
            # paper: d/dalpha [alpha*sgn(u) + beta] = sgn(u) - d*u
            # code:  d/dalpha [alpha*(sgn(u) + beta)] = sgn(u) + beta - d*u
            ga = (grad * s - gd * u).sum(dtype=acc)
            if ctx.code_form:
                ga = ga + grad.sum(dtype=acc) * b.to(acc)
            grad_alpha = ga.reshape(()).to(ctx.param_dtypes[0])
        if ctx.needs_input_grad[2]:
            # paper: d/dbeta = 1 - d;  code: d/dbeta = alpha - d
            total = grad.sum(dtype=acc)
            gb = (total * a.to(acc) if ctx.code_form else total) - gd.sum(dtype=acc)
            grad_beta = gb.reshape(()).to(ctx.param_dtypes[1])
        return grad_x, grad_alpha, grad_beta, None


def adabin_activation(
    x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, form: str = "paper"
) -> torch.Tensor:
    """AdaBin activation binarizer (Tu et al., "AdaBin", ECCV 2022, Eq. 10-12).

    Forward, with ``u = (x - beta_a) / alpha_a``::

        paper form (default):  ab = alpha_a * sgn(u) + beta_a
        code form:             ab = alpha_a * (sgn(u) + beta_a)   (the released code)

    Backward: ``d sgn/du ~= max(0, 2 - 2|u|)`` (Bi-Real Net); gradients reach ``x``, ``alpha_a``
    and ``beta_a`` through ``u`` and through the affine output. ``alpha_a`` is clamped to at
    least ``MIN_ALPHA`` in the forward pass; its gradient passes the clamp unchanged.

    Args:
        x: input of any shape and floating dtype (the output keeps the dtype).
        alpha: scalar tensor ``alpha_a``.
        beta: scalar tensor ``beta_a``.
        form: ``"paper"`` or ``"code"``.
    """
    check_act_form(form)
    return _AdaBinActivation.apply(x, alpha, beta, form == "code")


def sign_activation(x: torch.Tensor) -> torch.Tensor:
    """BNN activation binarizer: ``sgn(x)`` with the clipped STE ``1{|x| <= 1}`` backward."""
    return sign_clipped_ste(x)


__all__ = [
    "ACT_FORMS",
    "MIN_ALPHA",
    "ActForm",
    "activation_center",
    "adabin_activation",
    "check_act_form",
    "effective_alpha",
    "sgn",
    "sign_activation",
]
