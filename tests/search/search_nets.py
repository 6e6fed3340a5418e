"""A small residual net with every kind of layer the adabin policy keeps float."""

from __future__ import annotations

import torch
from torch import nn


class SmallNet(nn.Module):
    """1-channel 28x28 input, 10 classes: stem, a residual block with a downsample conv, a
    depthwise conv, a plain conv and a linear classifier (7 conv/linear layers)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU()
        )
        self.conv1 = nn.Conv2d(8, 16, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 16, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.downsample = nn.Sequential(nn.Conv2d(8, 16, 1, 2, bias=False), nn.BatchNorm2d(16))
        self.dw = nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False)
        self.bn3 = nn.BatchNorm2d(16)
        self.conv3 = nn.Conv2d(16, 32, 3, 1, 1, bias=False)
        self.bn4 = nn.BatchNorm2d(32)
        self.act = nn.ReLU()
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.act(self.bn1(self.conv1(x)))
        x = self.act(self.bn2(self.conv2(y)) + self.downsample(x))
        x = self.act(self.bn3(self.dw(x)))
        x = self.act(self.bn4(self.conv3(x)))
        return self.fc(x.mean((2, 3)))


def small_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return SmallNet()
