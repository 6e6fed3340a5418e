"""Calibration data and calibration of a freshly binarized model, without training.

The search compares many binarized versions of one float model on a small calibration set. A
freshly binarized model is not comparable as it comes out of :func:`autobin.binarize`: its
activation binary sets start at ``{-1, +1}`` whatever its inputs are, and the BatchNorm
statistics after each binary layer still describe the float layer's outputs. :func:`calibrate`
fixes both on the calibration images, in one pass in execution order:

* each AdaBin layer (paper form) gets the activation set that best fits the inputs it sees:
  ``beta_a = mean(x)`` (the threshold and centre) and ``alpha_a = mean |x - beta_a|`` (the
  half-distance minimising ``E (x - beta_a - alpha_a sgn(x - beta_a))^2`` for that threshold);
* every BatchNorm re-estimates its running statistics (cumulative average) on the images as
  the layers before it now compute them.


Dropout and other train-mode behaviour stay off (only the norms run in train mode), so the
result depends on the images alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..nn import AdaBinConv2d, AdaBinLinear
from ..quantizers.activation import MIN_ALPHA
from .errors import SearchError

CalibrationData = Dataset | DataLoader | torch.Tensor | str


def calibration_images(data: CalibrationData, size: int, seed: int) -> torch.Tensor:
    """Up to ``size`` images from ``data`` as one ``(N, C, H, W)`` tensor, chosen by ``seed``.

    Args:
        data: a dataset name (its ``"train"`` split, see :func:`autobin.data.load_dataset`), a
            map-style dataset of ``(image, label)`` pairs or images, a DataLoader (its first
            ``size`` images, in its order) or an image tensor.
        size: how many images at most.
        seed: picks the images of a dataset or tensor (a seeded permutation).

    Raises:
        SearchError: no images, or items that are not images.
    """
    if size < 1:
        raise SearchError(f"calibration_size must be >= 1, got {size}; e.g. 128")
    if isinstance(data, str):
        from ..data import load_dataset

        data = load_dataset(data, "train")
    if isinstance(data, DataLoader):
        images = images_from_batches(data, size)
    elif isinstance(data, torch.Tensor):
        images = _pick(data, size, seed) if data.dim() == 4 else data
    else:
        try:
            n = len(data)  # type: ignore[arg-type]
        except TypeError:
            raise SearchError(
                f"calibration data of type {type(data).__name__} has no length; pass a dataset "
                "name (e.g. 'mnist5k'), a map-style Dataset, a DataLoader or an image tensor"
            ) from None
        order = _order(n, size, seed)
        images = torch.stack([_image(data[i], i) for i in order]) if order else None
    if images is not None and images.dim() == 4 and images.shape[0] == 1:
        raise SearchError(
            "the calibration set has 1 image; re-estimating BatchNorm statistics needs at least "
            "2: pass more images (calibration_size defaults to 128)"
        )
    if images is None or images.dim() != 4 or images.shape[0] == 0:
        shape = None if images is None else tuple(images.shape)
        raise SearchError(
            f"the calibration set is empty or not a batch of images (got shape {shape}); pass "
            "data with at least one (C, H, W) image, e.g. 'mnist5k' or a Dataset of "
            "(image, label) pairs"
        )
    return images.float()


def _order(n: int, size: int, seed: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=generator)[:size].tolist()


def _pick(images: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    return images[_order(images.shape[0], size, seed)]


def _image(item: Any, index: int) -> torch.Tensor:
    image = item[0] if isinstance(item, (tuple, list)) else item
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        raise SearchError(
            f"calibration item {index} is not a (C, H, W) image tensor or an (image, label) "
            f"pair (got {type(image).__name__}); give the dataset a transform that returns "
            "tensors"
        )
    return image


def _batch_images(batch: Any) -> torch.Tensor:
    images = batch[0] if isinstance(batch, (tuple, list)) else batch
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise SearchError(
            "the DataLoader's batches must be (images, labels) with images (N, C, H, W), "
            f"got {type(images).__name__}"
        )
    return images


def images_from_batches(
    loader: Iterable[Any], size: int, images_of: Callable[[Any], torch.Tensor] = _batch_images
) -> torch.Tensor | None:
    """The first ``size`` images of ``loader``'s batches (``images_of(batch)`` gives a batch's
    ``(N, C, H, W)`` images), or None if it yields none."""
    taken: list[torch.Tensor] = []
    count = 0
    for batch in loader:
        taken.append(images_of(batch)[: size - count])
        count += taken[-1].shape[0]
        if count >= size:
            break
    return torch.cat(taken) if taken else None


def _norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


def _fit_activation_set(module: nn.Module, args: tuple[Any, ...]) -> None:
    x = args[0].detach().float()
    center = x.mean()
    module.act_beta.copy_(center)
    module.act_alpha.copy_((x - center).abs().mean().clamp_min(MIN_ALPHA))


def batches(images: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, ...]:
    """``images`` in the fewest batches of at most ``batch_size``, as equal as possible (so no
    batch is a lone image, which train-mode BatchNorm refuses on 1x1 feature maps)."""
    count = -(-images.shape[0] // batch_size)
    return torch.tensor_split(images, count)


@torch.no_grad()
def calibrate(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> nn.Module:
    """Fit the activation sets and re-estimate the BatchNorm statistics of ``model`` in place.

    The activation sets are fitted on the first batch of ``images``; the BatchNorm statistics
    average over all of them. The model ends in eval mode.
    """
    model.eval()
    adaptive = [
        m
        for m in model.modules()
        if isinstance(m, (AdaBinConv2d, AdaBinLinear))
        and m.act_form == "paper"
        and m.binarize_activations
    ]
    norms = _norms(model)
    saved_momentum = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the calibration batches
        norm.train()
    hooks = [m.register_forward_pre_hook(_fit_activation_set) for m in adaptive]
    try:
        for chunk in batches(images, batch_size):
            model(chunk)
            for hook in hooks:
                hook.remove()
            hooks = []
    finally:
        for hook in hooks:
            hook.remove()
        for norm, momentum in zip(norms, saved_momentum, strict=True):
            norm.momentum = momentum
        model.eval()
    return model


@torch.no_grad()
def logits(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The model's ``(N, classes)`` outputs on ``images`` in eval mode.

    Raises:
        SearchError: the model does not return one ``(N, classes)`` tensor.
    """
    model.eval()
    outs = []
    for chunk in batches(images, batch_size):
        out = model(chunk)
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            raise SearchError(
                f"the model returns {type(out).__name__}"
                + (f" of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else "")
                + ", but the search compares class logits (N, classes); search a classifier "
                "(timm model), or an MMDetection detector through autobin.integrations.mmdet"
            )
        outs.append(out.float())
    return torch.cat(outs)


__all__ = ["CalibrationData", "calibrate", "calibration_images", "images_from_batches", "logits"]
