"""VGG-Small, the CIFAR VGG of the BNN literature (LQ-Nets, IR-Net; AdaBin Table 3).

    conv0 (float stem, 128) -> bn0 -> nonlinear0
    conv1 (128) -> pool -> bn1 -> nonlinear1
    conv2 (256) -> bn2 -> nonlinear2
    conv3 (256) -> pool -> bn3 -> nonlinear3
    conv4 (512) -> bn4 -> nonlinear4
    conv5 (512) -> pool -> bn5 -> nonlinear5
    flatten -> fc (float classifier)

All convs are 3x3 with padding 1 and no bias; the pools are 2x2 max pools, applied before the
BatchNorm as in IR-Net's ``vgg_small_1w1a``. Each nonlinearity is its own ``ReLU`` module
(IR-Net shares one Hardtanh), so a recipe can give each its own per-channel Maxout. The AdaBin
authors released no VGG-Small code; module names follow IR-Net's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

WIDTHS = (128, 128, 256, 256, 512, 512)
POOL_AFTER = (1, 3, 5)  # convs followed by a 2x2 max pool


class VGGSmall(nn.Module):
    """VGG-Small for 32x32 inputs (other sizes divisible by 8 work too).

    Args:
        num_classes: classifier outputs (0: no classifier).
        in_chans: input channels.
        img_size: input height and width; the classifier sees ``512 * (H/8) * (W/8)`` features.
    """

    def __init__(
        self, num_classes: int = 10, in_chans: int = 3, img_size: int | Sequence[int] = 32
    ) -> None:
        super().__init__()
        height, width = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        if height % 8 or width % 8:
            raise ValueError(f"VGG-Small needs an input size divisible by 8, got {img_size!r}")
        self.num_classes = num_classes
        self.num_features = WIDTHS[-1] * (height // 8) * (width // 8)
        in_planes = in_chans
        for i, planes in enumerate(WIDTHS):
            self.add_module(f"conv{i}", nn.Conv2d(in_planes, planes, 3, padding=1, bias=False))
            self.add_module(f"bn{i}", nn.BatchNorm2d(planes))
            self.add_module(f"nonlinear{i}", nn.ReLU())
            in_planes = planes
        self.pooling = nn.MaxPool2d(kernel_size=2, stride=2)
        self.fc = self._classifier(num_classes)
        for m in self.modules():  # IR-Net's initialization
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def _classifier(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool not in (None, ""):
            raise ValueError(f"VGG-Small has no global pool, got global_pool={global_pool!r}")
        self.num_classes = num_classes
        self.fc = self._classifier(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(len(WIDTHS)):
            x = getattr(self, f"conv{i}")(x)
            if i in POOL_AFTER:
                x = self.pooling(x)
            x = getattr(self, f"nonlinear{i}")(getattr(self, f"bn{i}")(x))
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.flatten(1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


__all__ = ["VGGSmall"]
