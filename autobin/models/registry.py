"""timm registrations of the CIFAR architectures: entrypoints and their ``pretrained_cfg``.

Each architecture registers under its name with a default config (no weights: autobin ships
none and never downloads) that records what the model expects: 3x32x32 inputs normalized with
the statistics the AdaBin authors' released CIFAR code uses (ImageNet's mean and std, see
:mod:`autobin.data`), its first conv and its classifier.
"""

from __future__ import annotations

from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from ..errors import AutobinError
from .cifar_resnet import CifarResNet
from .vgg_small import VGGSmall

#: Architecture name -> what it is (the paper's model and where its definition comes from).
CIFAR_MODELS: dict[str, str] = {
    "resnet18_cifar": "ResNet-18 with a 3x3 stem for CIFAR (released AdaBin code, 1x1 shortcuts)",
    "resnet20_cifar": "ResNet-20 for CIFAR (released AdaBin code, option-A shortcuts)",
    "vgg_small_cifar": "VGG-Small for CIFAR (IR-Net's definition; AdaBin Table 3)",
}


class NoPretrainedWeightsError(AutobinError, RuntimeError):
    """``pretrained=True`` for an architecture autobin ships no weights for."""


def _cfg(first_conv: str, classifier: str, pool_size: tuple[int, int]) -> dict[str, Any]:
    return {
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": pool_size,
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": first_conv,
        "classifier": classifier,
    }


default_cfgs = generate_default_cfgs(
    {
        "resnet18_cifar": _cfg("conv1", "linear", (4, 4)),
        "resnet20_cifar": _cfg("conv1", "linear", (8, 8)),
        "vgg_small_cifar": {**_cfg("conv0", "fc", (4, 4)), "fixed_input_size": True},
    }
)


def _build(variant: str, model_cls: Any, pretrained: bool, **kwargs: Any) -> nn.Module:
    if pretrained:
        raise NoPretrainedWeightsError(
            f"autobin ships no pretrained weights for {variant!r} and downloads nothing; "
            "create it with pretrained=False and train it (autobin train), or binarize it with "
            "recipe='adabin-reference' and load a released AdaBin checkpoint with "
            "autobin.compat.load_reference_checkpoint"
        )
    return build_model_with_cfg(model_cls, variant, pretrained=False, **kwargs)


@register_model
def resnet18_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-18 for CIFAR: 3x3 stem, stages of 64-512 channels, 1x1 conv + BN shortcuts."""
    args = {"blocks": (2, 2, 2, 2), "widths": (64, 128, 256, 512), "shortcut": "B"}
    return _build("resnet18_cifar", CifarResNet, pretrained, **args, **kwargs)


@register_model
def resnet20_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-20 for CIFAR: stages of 16, 32, 64 channels, option-A shortcuts (0.27M params)."""
    args = {"blocks": (3, 3, 3), "widths": (16, 32, 64), "shortcut": "A", "kaiming_init": True}
    return _build("resnet20_cifar", CifarResNet, pretrained, **args, **kwargs)


@register_model
def vgg_small_cifar(pretrained: bool = False, **kwargs: Any) -> VGGSmall:
    """VGG-Small: six 3x3 convs (128-128-256-256-512-512), three max pools, one classifier."""
    return _build("vgg_small_cifar", VGGSmall, pretrained, **kwargs)


__all__ = ["CIFAR_MODELS", "NoPretrainedWeightsError", "default_cfgs"]
