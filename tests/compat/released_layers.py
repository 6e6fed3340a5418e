"""An independent re-implementation of the released AdaBin layers and CIFAR ResNets.

Layers written from ADABIN.md, deliberately differently from autobin's fused closed-form
functions: plain autograd through the statistics, the Bi-Real polynomial as a differentiable
surrogate, EDE as its own autograd function. The ResNet follows the released architecture (a
Maxout after the float stem conv too, option-A shortcuts, BatchNorm1d before the classifier),
not autobin's models. Names follow the released code (``binary_a.alpha_a``, ``pos_scale``,
``nonlinear1``, ``linear``, ...).
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


def option_a(x, planes):
    """The released option-A shortcut: every second pixel, planes // 4 zero channels each side."""
    return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4), "constant", 0)


class Block(nn.Module):
    """A released CIFAR ResNet basic block; ``conv`` and ``act`` pick released or float layers.

    out = act1(bn1(conv1(x)) + shortcut(x)); out = act2(bn2(conv2(out)) + out), with the
    option-A shortcut where the shape changes.
    """

    def __init__(self, cin: int, cout: int, stride: int, conv, act) -> None:
        super().__init__()
        self.conv1 = conv(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.nonlinear1 = act(cout)
        self.conv2 = conv(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.nonlinear2 = act(cout)
        self.planes = cout
        self.downsample = stride != 1 or cin != cout

    def forward(self, x):
        shortcut = option_a(x, self.planes) if self.downsample else x
        out = self.bn1(self.conv1(x))
        out += shortcut
        out = self.nonlinear1(out)
        x1 = out
        out = self.bn2(self.conv2(out))
        out += x1
        return self.nonlinear2(out)


class ReleasedResNet(nn.Module):
    """The released CIFAR ResNet: float stem conv + BN + nonlinearity, stages of blocks, global
    average pool, BatchNorm1d, ``linear`` classifier. ``released=True`` uses the released
    binary convs and Maxouts, ``False`` plain convs and ReLUs (the float model to binarize)."""

    def __init__(self, blocks, widths, released: bool, num_classes: int = 10) -> None:
        super().__init__()
        conv = ReleasedAdaBinConv2d if released else nn.Conv2d
        act = ReleasedMaxout if released else (lambda c: nn.ReLU())
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.nonlinear1 = act(widths[0])
        cin = widths[0]
        for i, (count, cout) in enumerate(zip(blocks, widths)):
            stage = []
            for j in range(count):
                stage.append(Block(cin, cout, 2 if i > 0 and j == 0 else 1, conv, act))
                cin = cout
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
        self.stages = len(blocks)
        self.bn2 = nn.BatchNorm1d(cin)
        self.linear = nn.Linear(cin, num_classes)

    def forward(self, x):
        out = self.nonlinear1(self.bn1(self.conv1(x)))
        for i in range(self.stages):
            out = getattr(self, f"layer{i + 1}")(out)
        out = F.avg_pool2d(out, out.size()[3])
        return self.linear(self.bn2(out.view(out.size(0), -1)))


def tiny_resnet(released: bool) -> ReleasedResNet:
    """Two stages of one block each (8 and 16 channels): the released structure, small."""
    return ReleasedResNet((1, 1), (8, 16), released)


def resnet20(released: bool) -> ReleasedResNet:
    """The released ResNet-20: three stages of three blocks, 16, 32 and 64 channels."""
    return ReleasedResNet((3, 3, 3), (16, 32, 64), released)


def randomize(model: nn.Module, t: float, k: float) -> nn.Module:
    """Trained-looking values for every parameter and BatchNorm statistic, EDE point (t, k)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("alpha_a"):
                p.uniform_(0.5, 1.5)
            elif name.endswith(("beta_a", "pos_scale", "neg_scale")):
                p.uniform_(-0.3, 0.8)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
            if isinstance(m, ReleasedAdaBinConv2d):
                m.t, m.k = t, k
    return model


def released_checkpoint(model: nn.Module, best_prec1: float = 88.1) -> dict:
    """What the released training script saves: DataParallel's ``module.`` prefix on each key."""
    state = {f"module.{k}": v.clone() for k, v in model.state_dict().items()}
    return {"state_dict": state, "best_prec1": best_prec1}
