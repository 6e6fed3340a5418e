"""Activation binarizers: AdaBin's learned binary set and the sign baseline.

The AdaBin binarizer is one fused autograd function: forward needs a single comparison, and the
backward pass computes the gradients of ``x``, ``alpha_a`` and ``beta_a`` in closed form from the
saved input, so binarizing an activation costs about one elementwise pass each way.
"""

from __future__ import annotations

from typing import Literal

import torch

from ..errors import check_choice
from .sign import sgn, sign_clipped_ste, two_level

ActForm = Literal["paper", "code"]
#: The activation forms, each with what it computes.
ACT_FORMS: dict[str, str] = {
    "paper": "alpha*sgn(u)+beta, the paper's form and the default",
    "code": "alpha*(sgn(u)+beta), the released code's form, to reproduce its checkpoints",
}
MIN_ALPHA = 1e-4


def activation_center(alpha: torch.Tensor, beta: torch.Tensor, form: str) -> torch.Tensor:
    """Center ``c_a`` of the activation set ``{c_a - alpha_a, c_a + alpha_a}``.

    ``c_a = beta_a`` in the paper form and ``alpha_a * beta_a`` in the released-code form.
    """
    return beta if form == "paper" else alpha * beta


def effective_alpha(alpha: torch.Tensor) -> torch.Tensor:
    """``alpha_a`` as used in the forward pass: clamped to at least ``MIN_ALPHA`` (> 0)."""
    return alpha.detach().clamp_min(MIN_ALPHA)


class _AdaBinActivation(torch.autograd.Function):
    """Fused AdaBin activation binarizer.

    Written with ``copysign`` and in-place updates rather than ``where`` and temporaries: on
    the CPU, ``where`` and fresh full-size tensors dominate the cost of these elementwise ops.
    Under ``torch.compile`` the forward is written out of place (see :func:`two_level`).
    """

    @staticmethod
    def forward(ctx, x, alpha, beta, code_form: bool):
        a = effective_alpha(alpha).to(x.dtype)
        b = beta.detach().to(x.dtype)
        ctx.save_for_backward(x, a, b)
        ctx.code_form = code_form
        ctx.param_dtypes = (alpha.dtype, beta.dtype)
        c = a * b if code_form else b
        # sgn(u) = sgn(x - beta) for alpha > 0; adding +0.0 turns -0.0 into +0.0 so sgn(0) = +1.
        # copysign(alpha, .) + c is bit-identical to alpha * sgn(u) + c.
        return two_level(a, torch.sub(x, b).add_(0.0), c, reuse_u=True)

    @staticmethod
    def backward(ctx, grad):
        x, a, b = ctx.saved_tensors
        u = torch.sub(x, b).add_(0.0).div_(a)
        gd = u.abs().mul_(-2.0).add_(2.0).clamp_min_(0.0).mul_(grad)  # grad * Bi-Real d sgn/du
        grad_alpha = grad_beta = None
        # Sums accumulate in at least float32 (float64 stays float64).
        acc = torch.promote_types(grad.dtype, torch.float32)
        total = grad.sum(dtype=acc)
        gd_total = gd.sum(dtype=acc)
        if ctx.needs_input_grad[1]:
            # paper: d/dalpha [alpha*sgn(u) + beta] = sgn(u) - d*u
            # code:  d/dalpha [alpha*(sgn(u) + beta)] = sgn(u) + beta - d*u
            one = torch.ones((), dtype=grad.dtype, device=grad.device)
            g_sign = torch.copysign(one.expand_as(u), u).mul_(grad).sum(dtype=acc)
            ga = g_sign - u.mul_(gd).sum(dtype=acc)
            if ctx.code_form:
                ga = ga + total * b.to(acc)
            grad_alpha = ga.reshape(()).to(ctx.param_dtypes[0])
        if ctx.needs_input_grad[2]:
            # paper: d/dbeta = 1 - d;  code: d/dbeta = alpha - d
            gb = (total * a.to(acc) if ctx.code_form else total) - gd_total
            grad_beta = gb.reshape(()).to(ctx.param_dtypes[1])
        grad_x = gd if ctx.needs_input_grad[0] else None
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
    check_choice(form, ACT_FORMS, "activation form")
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
    "effective_alpha",
    "sgn",
    "sign_activation",
]
