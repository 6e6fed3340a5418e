"""Example inputs for the eager pass, read from the model when the caller gives none.

:func:`infer_input_shape` finds the per-sample input shape (channels from the first weight
layer, the image size from the patch embedding or timm's ``pretrained_cfg``);
:func:`default_example_inputs` makes a seeded random batch of it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import BinarizeError

DEFAULT_IMAGE_SIZE = (224, 224)


def _first_weight_layer(model: nn.Module) -> nn.Module | None:
    for module in model.modules():
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
            return module
    return None


def _pair(value: Any) -> tuple[int, int] | None:
    if isinstance(value, int) and value > 0:
        return (value, value)
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) and v > 0 for v in value)
    ):
        return (int(value[0]), int(value[1]))
    return None


def _fixed_image_size(model: nn.Module) -> tuple[int, int] | None:
    """The image size a model is built for, where it has one (ViT/Swin/... patch embedding)."""
    patch_embed = getattr(model, "patch_embed", None)
    if isinstance(patch_embed, nn.Module) and not getattr(patch_embed, "dynamic_img_size", False):
        size = _pair(getattr(patch_embed, "img_size", None))
        if size is not None:
            return size
    return _pair(getattr(model, "img_size", None))


def infer_input_shape(model: nn.Module) -> tuple[int, ...]:
    """The per-sample input shape of ``model``, read from the model itself.

    Channels come from the first conv layer (the stem or the patch embedding), so
    ``timm.create_model(..., in_chans=1)`` gives 1; the spatial size is the patch embedding's
    fixed image size when it has one (``img_size=...``), else timm's
    ``pretrained_cfg['input_size']``, else 224 x 224. A model whose first layer is a linear
    takes timm's input size if it has one (a linear patch embedding), else ``in_features``.

    Raises:
        BinarizeError: the model has no conv or linear layer to read the input from.
    """
    first = _first_weight_layer(model)
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    cfg_size = cfg.get("input_size") if isinstance(cfg, dict) else None
    if first is None:
        if cfg_size:
            return tuple(int(d) for d in cfg_size)
        raise BinarizeError(
            f"{type(model).__name__} has no conv or linear layer and no "
            "pretrained_cfg['input_size'] to build an example input from; pass "
            "example_inputs=(torch.randn(1, C, H, W),) with the shape your model expects"
        )
    if isinstance(first, nn.Linear):  # an MLP, or a linear patch embedding of image models
        if cfg_size and len(cfg_size) == 3:
            return tuple(int(d) for d in cfg_size)
        return (first.in_features,)
    channels = first.in_channels
    spatial = len(first.kernel_size)
    if spatial != 2:
        return (channels, *([32] * spatial))  # Conv1d/Conv3d models: a small example
    size = _fixed_image_size(model)
    if size is None and cfg_size and len(cfg_size) == 3:
        size = (int(cfg_size[1]), int(cfg_size[2]))
    return (channels, *(size or DEFAULT_IMAGE_SIZE))


def default_example_inputs(model: nn.Module, batch: int = 1) -> tuple[torch.Tensor]:
    """A seeded random batch of :func:`infer_input_shape`, on the model's device and dtype.

    One sample is enough: the eager pass runs in eval mode and only records shapes (MACs are
    counted per sample), and it is most of the time :func:`annotate` takes.
    """
    shape = infer_input_shape(model)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((batch, *shape), generator=gen).to(device=device, dtype=dtype)
    return (x,)
