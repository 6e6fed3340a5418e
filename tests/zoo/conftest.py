"""Hand-built binary models for the zoo tests (they need no graph pass)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
import torch
from torch import nn

from autobin.nn import (
    AdaBinConv2d,
    AdaBinLinear,
    BinaryLayer,
    BiRealShortcut,
    Maxout,
    SignConv2d,
    SignLinear,
    XnorConv2d,
    XnorLinear,
)
from autobin.recipes import load_recipe


def build_cnn(num_classes: int = 5, in_chans: int = 3) -> nn.Module:
    """Float stem, AdaBin convs with odd channel counts, grouped/depthwise, Bi-Real shortcut."""
    return nn.Sequential(
        nn.Conv2d(in_chans, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        Maxout(8),
        AdaBinConv2d(8, 15, 3, padding=1, bias=False),
        nn.BatchNorm2d(15),
        Maxout(15),
        AdaBinConv2d(15, 21, 3, padding=1, groups=3),  # grouped, bias kept
        nn.BatchNorm2d(21),
        Maxout(21),
        BiRealShortcut(
            nn.Sequential(
                AdaBinConv2d(21, 21, 3, padding=1, groups=21, bias=False), nn.BatchNorm2d(21)
            )
        ),
        Maxout(21),
        BiRealShortcut(
            nn.Sequential(
                AdaBinConv2d(21, 21, 3, padding=1, bias=False, act_form="code"), nn.BatchNorm2d(21)
            )
        ),
        Maxout(21),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.BatchNorm1d(21),
        AdaBinLinear(21, 11),
        Maxout(11),
        nn.Linear(11, num_classes),
    )


def build_baselines(num_classes: int = 4) -> nn.Module:
    """BNN and XNOR-Net baseline layers."""
    return nn.Sequential(
        nn.Conv2d(3, 9, 3, padding=1),
        nn.BatchNorm2d(9),
        SignConv2d(9, 7, 3, padding=1),
        nn.BatchNorm2d(7),
        XnorConv2d(7, 11, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(11),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        SignLinear(11, 13),
        XnorLinear(13, num_classes),
    )


class TokenMixer(nn.Module):
    """Channels-last (N, L, C) token model, as timm's transformers and MLPs produce."""

    def __init__(self, dim: int = 10, hidden: int = 17, num_classes: int = 3) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = AdaBinLinear(dim, hidden)
        self.act = Maxout(hidden, channel_dim=-1)
        self.fc2 = AdaBinLinear(hidden, dim, act_form="code")
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.fc2(self.act(self.fc1(self.norm(x))))
        return self.head(x.mean(dim=1))


ARCHS: dict[str, Callable[..., nn.Module]] = {
    "tiny-cnn": build_cnn,
    "tiny-baselines": build_baselines,
    "tiny-tokens": TokenMixer,
}
INPUTS: dict[str, tuple[int, ...]] = {
    "tiny-cnn": (3, 3, 12, 12),
    "tiny-baselines": (3, 3, 10, 10),
    "tiny-tokens": (3, 6, 10),
}


def rebuild(config: Mapping[str, Any]) -> nn.Module:
    arch = config["architecture"]
    return ARCHS[arch["name"]](**arch["kwargs"])


@torch.no_grad()
def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter and BN statistic non-trivial values (published models are trained)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("act_alpha"):
            p.copy_(0.5 + torch.rand(p.shape, generator=g))
        else:
            p.copy_(torch.randn(p.shape, generator=g) * 0.5 + 0.1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
            m.num_batches_tracked.fill_(7)
    return model


def make(arch: str, seed: int = 0, **kwargs: Any) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    model = randomize(ARCHS[arch](**kwargs), seed).eval()
    x = torch.randn(INPUTS[arch], generator=torch.Generator().manual_seed(seed + 1))
    return model, x


def sample_recipe() -> dict[str, Any]:
    """The built-in recipe ``adabin`` as a dict."""
    return load_recipe("adabin").to_dict()


@pytest.fixture
def zoo(tmp_path):
    return tmp_path / "zoo"


@pytest.fixture
def kit():
    """Namespace of the helpers above."""

    class Kit:
        ARCHS = ARCHS
        make = staticmethod(make)
        rebuild = staticmethod(rebuild)
        randomize = staticmethod(randomize)
        sample_recipe = staticmethod(sample_recipe)

        @staticmethod
        def binary_layers(model: nn.Module) -> dict[str, BinaryLayer]:
            return {n: m for n, m in model.named_modules() if isinstance(m, BinaryLayer)}

    return Kit
