"""An independent re-implementation of the released AdaBin layers, written from ADABIN.md.

Deliberately written differently from autobin's fused closed-form functions: plain autograd
through the statistics, the Bi-Real polynomial as a differentiable surrogate, EDE as its own
autograd function. Names follow the released code (``binary_a.alpha_a``, ``pos_scale``, ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ReleasedEDESign(torch.autograd.Function):
    """sgn forward; backward k * t * (1 - tanh(t * u)^2) (IR-Net's EDE)."""

    @staticmethod
    def forward(ctx, u, t, k):
        ctx.save_for_backward(u)
        ctx.t, ctx.k = t, k
        return torch.where(u >= 0, 1.0, -1.0).to(u.dtype)  # sign(0) = +1 as in autobin

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        return grad * ctx.k * ctx.t * (1 - torch.tanh(ctx.t * u) ** 2), None, None


class ReleasedBinaryActivation(nn.Module):
    """alpha_a * (sgn(u) + beta_a), u = (x - beta_a) / alpha_a; Bi-Real backward."""

    def __init__(self) -> None:
        super().__init__()
        self.alpha_a = nn.Parameter(torch.ones(1))
        self.beta_a = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        u = (x - self.beta_a) / self.alpha_a
        hard = torch.where(u >= 0, 1.0, -1.0).to(u.dtype)
        # piecewise polynomial whose derivative is 2 - 2|u| on (-1, 1), 0 outside
        poly = torch.where(u < -1, -1.0, torch.where(u < 0, 2 * u + u * u, 2 * u - u * u))
        poly = torch.where(u >= 1, torch.ones_like(u), poly)
        s = hard.detach() - poly.detach() + poly
        return self.alpha_a * (s + self.beta_a)


class ReleasedAdaBinConv2d(nn.Conv2d):
    """Released binary conv: equalized weights (no eps), code-form binary activations."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.binary_a = ReleasedBinaryActivation()
        self.t, self.k = 0.1, 10.0

    def forward(self, x):
        w = self.weight
        beta = w.mean(dim=(1, 2, 3), keepdim=True)
        alpha = ((w - beta) ** 2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
        wb = alpha * ReleasedEDESign.apply((w - beta) / alpha, self.t, self.k) + beta
        return F.conv2d(
            self.binary_a(x), wb, self.bias, self.stride, self.padding, self.dilation, self.groups
        )


class ReleasedMaxout(nn.Module):
    """pos_scale * max(x, 0) - neg_scale * max(-x, 0), scales shaped [1, C, 1, 1]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pos_scale = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.neg_scale = nn.Parameter(torch.full((1, channels, 1, 1), 0.25))

    def forward(self, x):
        return self.pos_scale * F.relu(x) - self.neg_scale * F.relu(-x)


class Block(nn.Module):
    """A CIFAR ResNet basic block; ``conv`` and ``act`` pick released or float layers."""

    def __init__(self, cin: int, cout: int, stride: int, conv, act) -> None:
        super().__init__()
        self.conv1 = conv(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.nonlinear1 = act(cout)
        self.conv2 = conv(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.nonlinear2 = act(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        out = self.nonlinear1(self.bn1(self.conv1(x)))
        return self.nonlinear2(self.bn2(self.conv2(out)) + self.shortcut(x))


class TinyResNet(nn.Module):
    """Stem conv + two blocks + classifier; ``released=True`` uses the released layers."""

    def __init__(self, released: bool) -> None:
        super().__init__()
        conv = ReleasedAdaBinConv2d if released else nn.Conv2d
        act = ReleasedMaxout if released else (lambda c: nn.ReLU())
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.layer1 = nn.Sequential(Block(8, 8, 1, conv, act), Block(8, 16, 2, conv, act))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.layer1(self.relu(self.bn1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))
