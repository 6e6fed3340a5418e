"""Binary convolution that saves its float input only: the binary input is recomputed in backward.

Binarize-then-convolve as two autograd nodes keeps two full-size tensors per layer until the
backward pass: the binarizer's input ``x`` (its backward needs ``u = (x - beta_a)/alpha_a``) and
the convolution's input, the binary activation ``ab`` (for the weight gradient). ``ab`` is a
cheap elementwise function of ``x``, so :func:`binary_input_conv2d` keeps ``x`` alone and
recomputes ``ab`` in backward: one activation-sized tensor less per binary convolution, eager and
under ``torch.compile`` alike, with the same values and gradients (the same ops on the same
inputs; tests/core/test_fused_conv.py checks them bit for bit against the two-node form).

The activation math is not repeated here: the method's input binarizer object
(:class:`autobin.quantizers.AdaBinInput`, :class:`autobin.quantizers.SignInput`) gives the
value and the closed-form gradients.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F


class ConvGeometry(NamedTuple):
    """The numeric conv arguments shared by forward and backward."""

    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int


class _BinaryInputConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, binarizer: Any, geometry: ConvGeometry, *act_params):
        ab = binarizer.value(x, *act_params)
        # F.conv2d, so autocast picks the compute dtype exactly as for a plain conv
        out = F.conv2d(ab, weight, bias, *geometry)
        # the weight as the conv used it (bf16 under autocast, as a plain conv would keep it)
        ctx.save_for_backward(x, weight.to(out.dtype), *act_params)
        ctx.weight_dtype = weight.dtype
        ctx.binarizer, ctx.geometry = binarizer, geometry
        ctx.bias_dtype = bias.dtype if bias is not None else None
        ctx.compute_dtype = out.dtype
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight, *act_params = ctx.saved_tensors
        needs = ctx.needs_input_grad
        needs_input = needs[0] or any(needs[5:])
        has_bias = ctx.bias_dtype is not None
        cdt = ctx.compute_dtype
        ab = ctx.binarizer.recompute(x, *act_params).to(cdt)
        stride, padding, dilation, groups = ctx.geometry
        grad_ab, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad.to(cdt),
            ab,
            weight,
            [weight.shape[0]] if has_bias else None,
            stride,
            padding,
            dilation,
            False,
            [0, 0],
            groups,
            [needs_input, needs[1], has_bias and needs[2]],
        )
        del ab
        grad_x, *grad_params = (None,) * (1 + len(act_params))
        if needs_input:
            wanted = (needs[0], *needs[5:])
            grad_x, *grad_params = ctx.binarizer.grads(x, *act_params, grad_ab.to(x.dtype), wanted)
        if grad_w is not None:
            grad_w = grad_w.to(ctx.weight_dtype)
        if grad_b is not None:
            grad_b = grad_b.to(ctx.bias_dtype)
        return grad_x, grad_w, grad_b, None, None, *grad_params


def binary_input_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    binarizer: Any,
    act_params: tuple[torch.Tensor, ...],
    geometry: ConvGeometry,
) -> torch.Tensor:
    """``conv2d(binarizer.value(x, *act_params), weight, bias)``, saving ``x`` but not the binary
    input.

    Args:
        x: the layer's float input ``(N, C, H, W)``.
        weight: the effective (binary) weight, differentiable.
        bias: optional bias.
        binarizer: the method's input binarizer (``value`` and ``grads``).
        act_params: the binarizer's learned parameters (``act_alpha``, ``act_beta`` for AdaBin).
        geometry: stride, numeric zero padding, dilation, groups.
    """
    return _BinaryInputConv2d.apply(x, weight, bias, binarizer, geometry, *act_params)


__all__ = ["ConvGeometry", "binary_input_conv2d"]
