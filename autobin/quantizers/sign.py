"""Sign functions with surrogate (straight-through) gradients.

Every function here binarizes with ``sgn(0) = +1``, so a binarized tensor holds exactly two
values. They differ only in the backward estimator ``d sgn(u) / du``:

* :func:`sign_ste` -- identity straight-through estimator (Bengio et al., 2013).
* :func:`sign_clipped_ste` -- ``1{|u| <= 1}`` (BinaryNet, Hubara et al., NeurIPS 2016).
* :func:`sign_ede` -- ``k * t * (1 - tanh(t u)^2)``, the error-decay estimator of IR-Net
  (Qin et al., CVPR 2020), used by AdaBin's released code.
* :func:`sign_bireal` -- ``max(0, 2 - 2|u|)``, the piecewise polynomial of Bi-Real Net
  (Liu et al., ECCV 2018), used by AdaBin for activations.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal

import torch

WeightEstimator = Literal["ste", "ede"]
#: The weight estimators (backward of sgn for weights), each with what it is.
WEIGHT_ESTIMATORS: dict[str, str] = {
    "ste": "identity straight-through",
    "ede": "IR-Net error-decay estimator, as in the released AdaBin code",
}


def sgn(x: torch.Tensor) -> torch.Tensor:
    """Sign with ``sgn(0) = +1``: ``+1`` where ``x >= 0``, ``-1`` elsewhere, in ``x``'s dtype."""
    one = torch.ones((), dtype=x.dtype, device=x.device)
    out = x.add(0.0)  # -0.0 + 0.0 = +0.0, so sgn(-0.0) = +1 too
    if torch.compiler.is_compiling():  # out= in channels-last layout breaks the graph
        return torch.copysign(one, out)
    return torch.copysign(one.expand_as(out), out, out=out)


def two_level(
    alpha: torch.Tensor, u: torch.Tensor, center: torch.Tensor, *, reuse_u: bool = False
) -> torch.Tensor:
    """``alpha * sgn(u) + center``, bit-identical, as ``copysign(alpha, u) + center``.

    ``u`` must already have ``-0.0`` turned into ``+0.0`` (so ``sgn(0) = +1``); ``alpha`` and
    ``center`` broadcast against it. Eagerly, ``reuse_u=True`` writes the result into ``u`` (a
    temporary the caller no longer needs), which saves one full-size allocation on the CPU.

    Under ``torch.compile`` the expression is written without ``out=`` or in-place updates:
    an ``out=`` tensor in channels-last layout breaks the graph, and an in-place add on the
    ``copysign`` result inside an autograd function's forward makes torch 2.11's compiled
    autograd drop the function's backward (every gradient through it came out zero). Inductor
    fuses the out-of-place expression into one kernel anyway.
    """
    if torch.compiler.is_compiling():
        return torch.copysign(alpha, u) + center
    out = u if reuse_u else None
    return torch.copysign(alpha.expand_as(u), u, out=out).add_(center)


def bireal_derivative(u: torch.Tensor) -> torch.Tensor:
    """Bi-Real Net surrogate ``d sgn(u)/du ~= max(0, 2 - 2|u|)`` (Liu et al., ECCV 2018)."""
    return (2.0 - 2.0 * u.abs()).clamp_min_(0.0)


def ede_derivative(u: torch.Tensor, t: float, k: float) -> torch.Tensor:
    """IR-Net error-decay surrogate ``d sgn(u)/du ~= k t (1 - tanh(t u)^2)`` (Qin et al., 2020)."""
    return k * t * (1.0 - torch.tanh(t * u).square())


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u: torch.Tensor) -> torch.Tensor:
        return sgn(u)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


def clipped_ste_derivative(u: torch.Tensor) -> torch.Tensor:
    """BinaryNet's clipped straight-through surrogate ``d sgn(u)/du ~= 1{|u| <= 1}``."""
    return u.abs().le_(1.0)  # in place on the fresh |u|: 1.0 / 0.0 without a bool temporary


class _SurrogateSign(torch.autograd.Function):
    """``sgn(u)`` forward; backward ``grad * derivative(u)`` for a given surrogate derivative."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, derivative: Callable[[torch.Tensor], torch.Tensor]):
        ctx.save_for_backward(u)
        ctx.derivative = derivative
        return sgn(u)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (u,) = ctx.saved_tensors
        return ctx.derivative(u).to(grad.dtype).mul_(grad), None


def sign_ste(u: torch.Tensor) -> torch.Tensor:
    """``sgn(u)`` forward; backward ``d/du = 1`` (identity straight-through)."""
    return _SignSTE.apply(u)


def sign_clipped_ste(u: torch.Tensor) -> torch.Tensor:
    """``sgn(u)`` forward; backward ``d/du = 1{|u| <= 1}`` (BinaryNet's clipped STE)."""
    return _SurrogateSign.apply(u, clipped_ste_derivative)


def sign_ede(u: torch.Tensor, t: float, k: float) -> torch.Tensor:
    """``sgn(u)`` forward; backward ``d/du = k t (1 - tanh(t u)^2)`` (IR-Net's EDE)."""
    return _SurrogateSign.apply(u, functools.partial(ede_derivative, t=float(t), k=float(k)))


def sign_bireal(u: torch.Tensor) -> torch.Tensor:
    """``sgn(u)`` forward; backward ``d/du = max(0, 2 - 2|u|)`` (Bi-Real Net)."""
    return _SurrogateSign.apply(u, bireal_derivative)
