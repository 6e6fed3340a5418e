"""Bi-Real style real-valued shortcut around a binary conv (+ its norm)."""

from __future__ import annotations

import torch
from torch import nn


class BiRealShortcut(nn.Module):
    """``out = body(x) + x``: a real-valued identity shortcut (Liu et al., Bi-Real Net, 2018).

    AdaBin's ResNets give every binary 3x3 conv its own shortcut,
    ``out = Maxout(BN(AdaBinConv(x)) + x)``; ``body`` is the conv and its norm. Input and output
    shapes must match.
    """

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x
