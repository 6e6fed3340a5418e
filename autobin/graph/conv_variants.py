"""Conv and linear variants whose forward differs from ``nn.Conv2d`` / ``nn.Linear``.

A binary layer computes ``conv2d(B_a(x), B_w(W))`` with the module's own stride, padding,
dilation and groups. timm's variants compute more than that, so each is described here by what
its forward adds, and the binary layer is built to compute the same thing:

* dynamic "same" padding (``Conv2dSame``, and the ``*Same`` standardized convs when their
  ``same_pad`` is set: TensorFlow-style padding that depends on the input size) -> the binary
  layer pads the same way (``dynamic_same_padding``); a ``*Same`` conv whose padding is static
  already has it in ``padding`` and gets nothing more;
* weight standardization (``StdConv2d``, ``ScaledStdConv2d`` and their ``Same`` forms:
  ``W' = gain * scale * (W - mean) / sqrt(var + eps)`` per output channel) -> the binary layer
  starts from the standardized weight ``W'``, the weight the float model really convolves with;
* timm's ``Linear`` (a dtype cast for AMP/TorchScript) -> a plain linear.

A Conv2d/Linear subclass with a forward of its own that is not listed here is kept float (the
report says why): autobin cannot know what it computes.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@functools.cache
def _timm_classes() -> dict[str, type]:
    try:  # modules by path: timm.layers also exports functions named like them
        conv2d_same = importlib.import_module("timm.layers.conv2d_same")
        std_conv = importlib.import_module("timm.layers.std_conv")
        timm_linear = importlib.import_module("timm.layers.linear")
    except ImportError:  # timm is a dependency, but keep the graph pass usable without it
        return {}
    return {
        "Conv2dSame": conv2d_same.Conv2dSame,
        "Conv2dSameExport": conv2d_same.Conv2dSameExport,
        "StdConv2d": std_conv.StdConv2d,
        "StdConv2dSame": std_conv.StdConv2dSame,
        "ScaledStdConv2d": std_conv.ScaledStdConv2d,
        "ScaledStdConv2dSame": std_conv.ScaledStdConv2dSame,
        "Linear": timm_linear.Linear,
    }


def _variant(module: nn.Module) -> str | None:
    """The name of ``module``'s class in the table, or None for the plain torch layers."""
    if type(module) in (nn.Conv2d, nn.Linear):
        return None
    for name, cls in _timm_classes().items():
        if type(module) is cls:
            return name
    return "unknown"


def _own_forward(module: nn.Module) -> bool:
    base = nn.Conv2d if isinstance(module, nn.Conv2d) else nn.Linear
    return type(module).forward is not base.forward


def unsupported_reason(module: nn.Module) -> str | None:
    """Why ``module`` cannot be binarized with its semantics kept, or None if it can."""
    if _variant(module) == "unknown" and _own_forward(module):
        return (
            f"{type(module).__name__} overrides the forward of "
            f"{'Conv2d' if isinstance(module, nn.Conv2d) else 'Linear'}: autobin cannot tell "
            "what it computes, so it is kept float"
        )
    return None


def _standardized_weight(module: nn.Conv2d, scaled: bool) -> torch.Tensor:
    """The weight a (Scaled)StdConv2d convolves with, computed as timm computes it."""
    out = module.out_channels
    gain = (module.gain * module.scale).view(-1) if scaled else None
    with torch.no_grad():
        weight = F.batch_norm(
            module.weight.reshape(1, out, -1), None, None, weight=gain, training=True,
            momentum=0.0, eps=module.eps,
        )  # fmt: skip
    return weight.reshape_as(module.weight)


def as_plain_layer(module: nn.Module) -> tuple[nn.Module, dict[str, Any]]:
    """A plain ``nn.Conv2d`` / ``nn.Linear`` computing what ``module`` computes, and options.

    Returns:
        ``(layer, options)``: ``layer`` has the float model's effective weight (``module``
        itself when it is a plain layer); ``options`` are extra binary-layer options
        (``{"dynamic_same_padding": True}`` for input-dependent "same" padding).
    """
    variant = _variant(module)
    if variant is None or variant == "unknown":
        return module, {}
    if variant == "Linear":
        plain = nn.Linear(module.in_features, module.out_features, module.bias is not None,
                          device=module.weight.device, dtype=module.weight.dtype)  # fmt: skip
        plain.load_state_dict(module.state_dict())
        return plain.train(module.training), {}
    dynamic = variant in ("Conv2dSame", "Conv2dSameExport") or bool(
        getattr(module, "same_pad", False)
    )
    plain = nn.Conv2d(
        module.in_channels, module.out_channels, module.kernel_size, module.stride,
        module.padding, module.dilation, module.groups, module.bias is not None,
        module.padding_mode, device=module.weight.device, dtype=module.weight.dtype,
    )  # fmt: skip
    with torch.no_grad():
        if variant.startswith(("StdConv2d", "ScaledStdConv2d")):
            plain.weight.copy_(_standardized_weight(module, variant.startswith("Scaled")))
        else:
            plain.weight.copy_(module.weight)
        if module.bias is not None:
            plain.bias.copy_(module.bias)
    return plain.train(module.training), {"dynamic_same_padding": True} if dynamic else {}


__all__ = ["as_plain_layer", "unsupported_reason"]
