"""Maxout: AdaBin's learnable piecewise-linear nonlinearity."""

from __future__ import annotations

import torch
from torch import nn


class _MaxoutFn(torch.autograd.Function):
    """Fused Maxout; clamps and in-place updates instead of ``where`` (slow on the CPU)."""

    @staticmethod
    def forward(ctx, x, gamma_pos, gamma_neg, dim: int):
        shape = [1] * x.dim()
        shape[dim] = -1
        gp = gamma_pos.to(x.dtype).reshape(shape)
        gn = gamma_neg.to(x.dtype).reshape(shape)
        ctx.save_for_backward(x, gp, gn)
        ctx.dim = dim
        ctx.param_dtype = gamma_pos.dtype
        # max(x,0)*gp + min(x,0)*gn: exactly x*gp for x >= 0 and x*gn for x < 0
        if torch.compiler.is_compiling():  # out of place: see autobin.quantizers.sign.two_level
            return torch.clamp_min(x, 0) * gp + torch.clamp_max(x, 0) * gn
        return torch.clamp_min(x, 0).mul_(gp).addcmul_(torch.clamp_max(x, 0), gn)

    @staticmethod
    def backward(ctx, grad):
        x, gp, gn = ctx.saved_tensors
        grad_x = grad_gp = grad_gn = None
        if ctx.needs_input_grad[0]:
            one = torch.ones((), dtype=x.dtype, device=x.device)
            # slope: gp where x >= 0 (heaviside(0) = 1), gn elsewhere
            grad_x = torch.heaviside(x, one).mul_(gp - gn).add_(gn).mul_(grad)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            dims = [d for d in range(x.dim()) if d != ctx.dim]
            acc = torch.promote_types(grad.dtype, torch.float32)  # float64 stays float64
            part = torch.clamp_min(x, 0).mul_(grad)
            grad_gp = part.sum(dim=dims, dtype=acc).to(ctx.param_dtype)
            if torch.compiler.is_compiling():  # out= in channels-last layout breaks the graph
                part = torch.clamp_max(x, 0).mul_(grad)
            else:
                torch.clamp_max(x, 0, out=part).mul_(grad)
            grad_gn = part.sum(dim=dims, dtype=acc).to(ctx.param_dtype)
        return grad_x, grad_gp, grad_gn, None


class Maxout(nn.Module):
    """Per-channel two-slope nonlinearity of AdaBin (Tu et al., ECCV 2022, Eq. 13).

    Forward, for channel ``c``::

        f(x) = gamma_pos[c] * max(x, 0) - gamma_neg[c] * max(-x, 0)

    i.e. slope ``gamma_pos`` for ``x >= 0`` and ``gamma_neg`` for ``x < 0``; initialised to 1 and
    0.25. Backward is exact: ``df/dx`` is the active slope, ``df/dgamma_pos = max(x, 0)``,
    ``df/dgamma_neg = -max(-x, 0)``.

    Works on ``(N, C, H, W)`` tensors (channels at dim 1) and on channels-last tensors such as
    the ``(N, L, C)`` tokens of transformers and MLPs or ``(N, H, W, C)`` maps (channels at the
    last dim). ``channel_dim=None`` picks dim 1 for 4-D input and the last dim otherwise.

    Args:
        num_channels: number of channels ``C``.
        channel_dim: ``1``, ``-1`` or ``None`` (auto).
        init_pos: initial positive slope.
        init_neg: initial negative slope.
    """

    def __init__(
        self,
        num_channels: int,
        channel_dim: int | None = None,
        init_pos: float = 1.0,
        init_neg: float = 0.25,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if not isinstance(num_channels, int) or num_channels <= 0:
            raise ValueError(f"Maxout needs a positive channel count, got {num_channels!r}")
        if channel_dim not in (None, 1, -1):
            raise ValueError(
                f"Maxout channel_dim must be 1 (NCHW), -1 (channels last) or None (auto: 1 for "
                f"4-D input, -1 otherwise), got {channel_dim!r}"
            )
        self.num_channels = num_channels
        self.channel_dim = channel_dim
        kw = {"device": device, "dtype": dtype or torch.float32}
        self.gamma_pos = nn.Parameter(torch.full((num_channels,), float(init_pos), **kw))
        self.gamma_neg = nn.Parameter(torch.full((num_channels,), float(init_neg), **kw))

    def _dim(self, x: torch.Tensor) -> int:
        if x.dim() not in (2, 3, 4):
            raise ValueError(
                f"Maxout expects a 2-D (N, C), 3-D (N, L, C) or 4-D (N, C, H, W) / (N, H, W, C) "
                f"tensor, got shape {tuple(x.shape)} ({x.dim()}-D)"
            )
        dim = self.channel_dim
        if dim is None:
            dim = 1 if x.dim() == 4 else -1
        dim = dim % x.dim()
        if x.shape[dim] != self.num_channels:
            raise ValueError(
                f"Maxout has {self.num_channels} channels but the input has {x.shape[dim]} at "
                f"dim {dim} (shape {tuple(x.shape)}); set channel_dim=1 for NCHW or -1 for "
                "channels-last input"
            )
        return dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _MaxoutFn.apply(x, self.gamma_pos, self.gamma_neg, self._dim(x))

    def extra_repr(self) -> str:
        where = {None: "auto", 1: "dim 1", -1: "last dim"}[self.channel_dim]
        return f"{self.num_channels}, channels={where}"
