"""CIFAR ResNets as the AdaBin authors' released code defines them (ResNet-18 and ResNet-20).

Float models: every nonlinearity is a ``ReLU`` module, every 3x3 conv a plain ``Conv2d``; the
``adabin-reference`` recipe turns the block convs into AdaBin convs and every ReLU into a
Maxout, which gives the released binary networks with the released module names:

    conv1 -> bn1 -> nonlinear1                     float 3x3 stem, 1 -> widths[0] channels
    layerN.i: out = nonlinear1(bn1(conv1(x)) + shortcut(x))
              out = nonlinear2(bn2(conv2(out)) + out)
    global average pool -> bn2 (BatchNorm1d) -> linear

Each 3x3 conv has its own real-valued shortcut (the Bi-Real pattern, built into the
architecture). A block that changes shape uses option A (ResNet-20: subsample by 2 and pad
zero channels, no parameters) or option B (ResNet-18: float 1x1 conv + BN).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

ShortcutOption = Literal["A", "B"]


class OptionAShortcut(nn.Module):
    """He et al.'s option-A shortcut: ``x[:, :, ::s, ::s]`` with zero channels padded on both
    sides (half of the added channels before, half after). No parameters."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"option A cannot reduce channels ({in_channels} -> {out_channels})")
        self.stride = stride
        self.pad_before = (out_channels - in_channels) // 2
        self.pad_after = out_channels - in_channels - self.pad_before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))


def _shortcut(in_planes: int, planes: int, stride: int, option: ShortcutOption) -> nn.Module:
    if stride == 1 and in_planes == planes:
        return nn.Identity()
    if option == "A":
        return OptionAShortcut(in_planes, planes, stride)
    return nn.Sequential(
        nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(planes),
    )


class CifarBasicBlock(nn.Module):
    """Two 3x3 conv + BN layers, each with its own shortcut, each followed by a nonlinearity."""

    def __init__(self, in_planes: int, planes: int, stride: int, option: ShortcutOption) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.nonlinear1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.nonlinear2 = nn.ReLU()
        self.shortcut = _shortcut(in_planes, planes, stride, option)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.nonlinear1(self.bn1(self.conv1(x)) + self.shortcut(x))
        return self.nonlinear2(self.bn2(self.conv2(out)) + out)


class CifarResNet(nn.Module):
    """A CIFAR ResNet of :class:`CifarBasicBlock` stages (stage ``i`` is ``layer{i+1}``).

    Args:
        blocks: blocks per stage, e.g. ``(3, 3, 3)`` for ResNet-20.
        widths: channels per stage; the stem has ``widths[0]``. Stages after the first halve
            the resolution.
        shortcut: ``"A"`` (parameter-free) or ``"B"`` (1x1 conv + BN) where a block changes
            shape.
        num_classes: classifier outputs (0: no classifier, ``forward`` returns pooled features).
        in_chans: input channels.
        kaiming_init: initialize conv and linear weights with Kaiming normal (fan-in), as the
            released ResNet-20 does; otherwise PyTorch's defaults (the released ResNet-18).
    """

    def __init__(
        self,
        blocks: Sequence[int],
        widths: Sequence[int],
        *,
        shortcut: ShortcutOption = "A",
        num_classes: int = 10,
        in_chans: int = 3,
        kaiming_init: bool = False,
    ) -> None:
        super().__init__()
        if len(blocks) != len(widths):
            raise ValueError(f"blocks {tuple(blocks)} and widths {tuple(widths)} differ in length")
        self.num_classes = num_classes
        self.num_features = widths[-1]
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.nonlinear1 = nn.ReLU()
        in_planes = widths[0]
        for i, (count, planes) in enumerate(zip(blocks, widths)):
            strides = [1 if i == 0 else 2] + [1] * (count - 1)
            stage = []
            for stride in strides:
                stage.append(CifarBasicBlock(in_planes, planes, stride, shortcut))
                in_planes = planes
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
        self.stages = len(blocks)
        self.bn2 = nn.BatchNorm1d(self.num_features)
        self.linear = self._classifier(num_classes)
        if kaiming_init:
            for m in self.modules():
                if isinstance(m, nn.Conv2d | nn.Linear):
                    nn.init.kaiming_normal_(m.weight)

    def _classifier(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.linear

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool not in (None, "avg"):
            raise ValueError(f"CIFAR ResNets pool by average only, got global_pool={global_pool!r}")
        self.num_classes = num_classes
        self.linear = self._classifier(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.nonlinear1(self.bn1(self.conv1(x)))
        for i in range(self.stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.bn2(F.adaptive_avg_pool2d(x, 1).flatten(1))
        return x if pre_logits else self.linear(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


__all__ = ["CifarBasicBlock", "CifarResNet", "OptionAShortcut", "ShortcutOption"]
