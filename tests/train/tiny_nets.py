"""Tiny seeded models shared by the training tests."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from autobin.nn import AdaBinConv2d, Maxout


def tiny_float_net(seed: int = 0, dropout: float = 0.0) -> nn.Module:
    """A seeded 1-channel, 10-class conv net; ``dropout`` adds a Dropout before the head."""
    torch.manual_seed(seed)
    head = [nn.Dropout(dropout)] if dropout else []
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), *head, nn.Linear(8, 10),
    )  # fmt: skip


def tiny_student(teacher: nn.Module, **options: Any) -> nn.Module:
    """``teacher`` with its second conv AdaBin-binarized (``options`` for it) and the ReLU after
    it a Maxout."""
    student = copy.deepcopy(teacher)
    student[3] = AdaBinConv2d.from_float(teacher[3], **options)
    student[5] = Maxout(8)
    return student
