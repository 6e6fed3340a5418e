"""Pure-torch reference of the packed binary layer (the fallback and the tests' oracle).

It computes the same quantities as the compiled kernels from the same packed weights, by
independent means: the weights are unpacked to ``+-1``, the input is binarized to ``+-1`` and
zero-padded, and the integer sums are ordinary float32 convolutions. Every term is an integer of
magnitude at most ``n = Cg*kh*kw < 2**24``, so these convolutions are exact whatever the
summation order. Per output channel ``o`` and position ``p`` (``V`` the taps inside the input,
``s_a``, ``s_w`` in ``{-1, +1}``; ADABIN.md section 6)::

    dot = sum_V s_w * s_a     Sw = sum_V s_w     Sa = sum_V s_a     nv = Cg * |V|
    y   = cdot*dot + csw*Sw + csa*Sa + cn*nv + bias          (combined in float64)

with ``cdot = s*alpha_w*alpha_a``, ``csw = s*alpha_w*c_a``, ``csa = s*beta_w*alpha_a``,
``cn = s*beta_w*c_a`` and ``bias = s*(b - mean) + beta_bn`` (``s`` the folded BatchNorm scale,
1 without one).

Error bound (float32, ``u = 2**-24``): the compiled kernels compute the integers exactly and
combine them with at most four roundings; the fake-quantized layer rounds its binary values and
each of its ``n`` float32 accumulations (then the BatchNorm). For every output::

    |y_deployed - y_fake_quantized| <= (n + 16) * u * (|s| * A + |shift|)
    A = n * (alpha_a + |c_a|) * (alpha_w + |beta_w|) + |b| + |mean|

(:attr:`PackedConv2d.error_bound <autobin.deploy.PackedConv2d>` holds it per output channel).
The integer parts (``dot``, ``Sw``, ``Sa``, ``nv``) agree exactly between every path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .packing import unpack_weight_signs

UNIT_ROUNDOFF = 2.0**-24


def integer_terms(layer, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(dot, Sw, Sa, nv)`` of a packed layer for NCHW input ``x``, exact, in float32.

    Shapes: ``dot``, ``Sw``, ``Sa`` broadcast to ``(N, O, OH, OW)``; ``nv`` is ``(1, 1, OH, OW)``.
    """
    groups, (kh, kw) = layer.groups, layer.kernel_size
    cin, out = layer.in_channels, layer.out_channels
    cg = cin // groups
    pt, pb, pl, pr = layer.paddings(x.shape[-2], x.shape[-1])
    conv = {"stride": layer.stride, "dilation": layer.dilation}
    sa = torch.where(x >= layer.threshold, 1.0, -1.0).to(torch.float32)
    sa = F.pad(sa, (pl, pr, pt, pb))
    w = unpack_weight_signs(layer.wbits, out, cg, (kh, kw)).to(x.device)
    w = torch.where(w, 1.0, -1.0)
    dot = F.conv2d(sa, w, groups=groups, **conv)
    ones_in = F.pad(x.new_ones((1, cin, x.shape[-2], x.shape[-1]), dtype=torch.float32),
                    (pl, pr, pt, pb))  # fmt: skip
    sw = F.conv2d(ones_in, w, groups=groups, **conv)
    ones_w = torch.ones((groups, cg, kh, kw), dtype=torch.float32, device=x.device)
    s_a = F.conv2d(sa, ones_w, groups=groups, **conv).repeat_interleave(out // groups, dim=1)
    nv = F.conv2d(ones_in[:, :cg], ones_w[:1], **conv)
    return dot, sw, s_a, nv


def packed_conv_reference(layer, x: torch.Tensor) -> torch.Tensor:
    """Output of a packed conv layer for NCHW input ``x`` (any float dtype and device)."""
    dot, sw, s_a, nv = integer_terms(layer, x)
    c = layer.coefficients.to(x.device)
    cdot, csw, csa, cn, bias = (t.reshape(1, -1, 1, 1) for t in c)
    y = cdot * dot.double() + csw * sw.double() + csa * s_a.double() + cn * nv.double() + bias
    return y.to(x.dtype)


__all__ = ["UNIT_ROUNDOFF", "integer_terms", "packed_conv_reference"]
