"""Activation binarizers: AdaBin's learned binary set and the sign baseline.

The AdaBin binarizer is one fused autograd function: forward needs a single comparison, and the
backward pass computes the gradients of ``x``, ``alpha_a`` and ``beta_a`` in closed form from the
saved input, so binarizing an activation costs about one elementwise pass each way.
"""

from __future__ import annotations

from typing import Literal

import torch

from ..errors import check_choice
from .sign import clipped_ste_derivative, sgn, sign_clipped_ste, two_level

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


class AdaBinInput:
    """AdaBin's activation binarizer as plain methods: its value and its closed-form grads.

    The one place the activation math lives: :func:`adabin_activation` (its own autograd
    function) and the fused binary convolution (:mod:`autobin.nn.fused`, which recomputes the
    binary input in backward instead of saving it) both call these methods.

    Written with ``copysign`` and in-place updates rather than ``where`` and temporaries: on
    the CPU, ``where`` and fresh full-size tensors dominate the cost of these elementwise ops.
    Under ``torch.compile`` the value is written out of place (see :func:`two_level`).
    """

    def __init__(self, form: str) -> None:
        self.form = check_choice(form, ACT_FORMS, "activation form")

    def _set(self, x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor):
        """``(alpha_a, beta_a, c_a)`` in ``x``'s dtype, detached."""
        a, b = effective_alpha(alpha).to(x.dtype), beta.detach().to(x.dtype)
        return a, b, activation_center(a, b, self.form)

    def value(self, x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """``alpha_a * sgn(u) + c_a`` with ``u = x - beta_a`` (``alpha_a > 0``), no autograd."""
        a, b, c = self._set(x, alpha, beta)
        # sgn(u) = sgn(x - beta) for alpha > 0; adding +0.0 turns -0.0 into +0.0 so sgn(0) = +1.
        # copysign(alpha, .) + c is bit-identical to alpha * sgn(u) + c.
        return two_level(a, torch.sub(x, b).add_(0.0), c, reuse_u=True)

    def recompute(self, x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """:meth:`value` again, for a backward pass that did not keep it: bit-identical values
        (for non-NaN ``x``); under ``torch.compile`` written as
        ``where(x - beta >= 0, c + alpha, c - alpha)``.

        A different expression on purpose: under ``torch.compile`` an identical one is merged
        with the forward's value by common-subexpression elimination, and the partitioner then
        saves that full-size tensor for backward, undoing the saving.
        """
        if not torch.compiler.is_compiling():
            return self.value(x, alpha, beta)  # eager: the cheaper in-place form
        a, b, c = self._set(x, alpha, beta)
        return torch.where(torch.sub(x, b) >= 0, c + a, c - a)

    def grads(
        self,
        x: torch.Tensor,
        alpha: torch.Tensor,
        beta: torch.Tensor,
        grad: torch.Tensor,
        needs: tuple[bool, bool, bool],
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """Gradients of ``x``, ``alpha_a``, ``beta_a`` from ``grad`` (of the binary value).

        ``needs`` says which of the three are wanted (the others come back as ``None``).
        """
        a, b, _ = self._set(x, alpha, beta)
        code_form = self.form == "code"
        u = torch.sub(x, b).add_(0.0).div_(a)
        gd = u.abs().mul_(-2.0).add_(2.0).clamp_min_(0.0).mul_(grad)  # grad * Bi-Real d sgn/du
        grad_alpha = grad_beta = None
        # Sums accumulate in at least float32 (float64 stays float64).
        acc = torch.promote_types(grad.dtype, torch.float32)
        total = grad.sum(dtype=acc)
        gd_total = gd.sum(dtype=acc)
        if needs[1]:
            # paper: d/dalpha [alpha*sgn(u) + beta] = sgn(u) - d*u
            # code:  d/dalpha [alpha*(sgn(u) + beta)] = sgn(u) + beta - d*u
            one = torch.ones((), dtype=grad.dtype, device=grad.device)
            g_sign = torch.copysign(one.expand_as(u), u).mul_(grad).sum(dtype=acc)
            ga = g_sign - u.mul_(gd).sum(dtype=acc)
            if code_form:
                ga = ga + total * b.to(acc)
            grad_alpha = ga.reshape(()).to(alpha.dtype)
        if needs[2]:
            # paper: d/dbeta = 1 - d;  code: d/dbeta = alpha - d
            gb = (total * a.to(acc) if code_form else total) - gd_total
            grad_beta = gb.reshape(()).to(beta.dtype)
        return (gd if needs[0] else None), grad_alpha, grad_beta


#: The AdaBin activation binarizer of each form.
ADABIN_INPUTS: dict[str, AdaBinInput] = {form: AdaBinInput(form) for form in ACT_FORMS}


class SignInput:
    """The BNN activation binarizer, ``sgn(x)`` with the clipped STE, as value and grads.

    Same interface as :class:`AdaBinInput` (no learned parameters); the math is
    :func:`autobin.quantizers.sgn` and :func:`autobin.quantizers.sign.clipped_ste_derivative`, as in
    :func:`sign_activation`.
    """

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """``sgn(x)`` with ``sgn(0) = +1``, no autograd."""
        return sgn(x)

    def recompute(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`value` again; a different expression under ``torch.compile`` (see
        :meth:`AdaBinInput.recompute`)."""
        if not torch.compiler.is_compiling():
            return self.value(x)
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    def grads(
        self, x: torch.Tensor, grad: torch.Tensor, needs: tuple[bool]
    ) -> tuple[torch.Tensor | None]:
        """Gradient of ``x``: ``grad * 1{|x| <= 1}``."""
        return (clipped_ste_derivative(x).to(grad.dtype).mul_(grad) if needs[0] else None,)


SIGN_INPUT = SignInput()


class _AdaBinActivation(torch.autograd.Function):
    """AdaBin activation binarizer: forward one comparison, closed-form backward from ``x``."""

    @staticmethod
    def forward(ctx, x, alpha, beta, binarizer: AdaBinInput):
        ctx.save_for_backward(x, alpha, beta)
        ctx.binarizer = binarizer
        return binarizer.value(x, alpha, beta)

    @staticmethod
    def backward(ctx, grad):
        x, alpha, beta = ctx.saved_tensors
        return *ctx.binarizer.grads(x, alpha, beta, grad, ctx.needs_input_grad[:3]), None


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
    return _AdaBinActivation.apply(x, alpha, beta, ADABIN_INPUTS[form])


def sign_activation(x: torch.Tensor) -> torch.Tensor:
    """BNN activation binarizer: ``sgn(x)`` with the clipped STE ``1{|x| <= 1}`` backward."""
    return sign_clipped_ste(x)


__all__ = [
    "ACT_FORMS",
    "ADABIN_INPUTS",
    "MIN_ALPHA",
    "SIGN_INPUT",
    "ActForm",
    "AdaBinInput",
    "SignInput",
    "activation_center",
    "adabin_activation",
    "effective_alpha",
    "sgn",
    "sign_activation",
]
