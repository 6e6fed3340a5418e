"""Load checkpoints of the released AdaBin code into autobin models.

A released checkpoint (e.g. CIFAR-10 ``resnet20_1w1a/model.th``) is ``{'state_dict': ...,
'best_prec1': ...}`` (or a bare state dict) whose keys carry DataParallel's ``module.`` prefix.
Its binary convs hold ``weight`` (the latent float weight) and their activation set as
``binary_a.alpha_a`` / ``binary_a.beta_a`` (shape ``[1]``); its Maxouts hold ``pos_scale`` /
``neg_scale`` (shape ``[1, C, 1, 1]``). autobin names them ``act_alpha`` / ``act_beta`` (scalars)
and ``gamma_pos`` / ``gamma_neg`` (shape ``[C]``); every other key (BatchNorm, float convs,
the classifier) keeps its name. The released Maxout computes
``pos_scale * max(x, 0) - neg_scale * max(-x, 0)``, which is autobin's Maxout with
``gamma_pos = pos_scale`` and ``gamma_neg = neg_scale`` (ADABIN.md section 4).
"""

from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import AutobinError, AutobinWarning
from ..nn import BinaryLayer
from ..nn.adabin import AdaBinBinarizers

#: Released parameter name (last components) -> autobin's.
RENAMES: tuple[tuple[str, str], ...] = (
    ("binary_a.alpha_a", "act_alpha"),
    ("binary_a.beta_a", "act_beta"),
    ("pos_scale", "gamma_pos"),
    ("neg_scale", "gamma_neg"),
)
_PREFIX = "module."
_OPTIONAL_SUFFIX = "num_batches_tracked"  # absent from checkpoints of older PyTorch versions


class UnsafePickleWarning(AutobinWarning):
    """A checkpoint is being unpickled (``allow_pickle=True``): it can run any code it holds."""


class ReferenceCheckpointError(AutobinError, ValueError):
    """A released checkpoint cannot be read, or does not fit the model."""


def load_reference_checkpoint(
    model: nn.Module,
    path_or_state_dict: str | os.PathLike[str] | Mapping[str, Any],
    *,
    allow_pickle: bool = False,
) -> dict[str, Any]:
    """Load a checkpoint saved by the released AdaBin code into ``model``.

    Args:
        model: a model binarized with the ``adabin-reference`` recipe (code activation form),
            with the released architecture's module names.
        path_or_state_dict: a checkpoint file, the dict it holds (``{'state_dict': ...}``) or a
            bare state dict.
        allow_pickle: files are read with ``torch.load(weights_only=True)``, which refuses
            arbitrary Python objects; set this only for a file you trust (it may run code).

    Returns:
        The checkpoint's other plain entries (e.g. ``{'best_prec1': 88.1}``).

    Raises:
        ReferenceCheckpointError: unreadable file, pickled objects without ``allow_pickle``, a
            model not binarized with the code form, missing or unexpected keys, shape mismatch.
    """
    source, checkpoint = _read(path_or_state_dict, allow_pickle)
    state, extras = _unwrap(checkpoint, source)
    _check_model(model, source)
    target = model.state_dict()
    mapped = {_rename(_strip_prefix(k, state)): v for k, v in state.items()}
    missing = [k for k in target if k not in mapped and not k.endswith(_OPTIONAL_SUFFIX)]
    unexpected = [k for k in mapped if k not in target]
    if missing or unexpected:
        raise ReferenceCheckpointError(
            f"{source}: the checkpoint does not fit the model: missing {_few(missing)}, "
            f"unexpected {_few(unexpected)}; build the model with the released architecture's "
            "module names and binarize it with recipe='adabin-reference'"
        )
    converted = {}
    for key, ref in target.items():
        if key not in mapped:  # num_batches_tracked of an older checkpoint
            converted[key] = torch.zeros_like(ref)
            continue
        value = mapped[key]
        if not isinstance(value, torch.Tensor):
            raise ReferenceCheckpointError(
                f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor"
            )
        if tuple(value.shape) != tuple(ref.shape):
            if value.numel() != ref.numel() or not _is_renamed(key):
                raise ReferenceCheckpointError(
                    f"{source}: {key!r} has shape {tuple(value.shape)} in the checkpoint but "
                    f"{tuple(ref.shape)} in the model; the architectures differ"
                )
            value = value.reshape(ref.shape)  # [1] -> [], [1, C, 1, 1] -> [C]
        _check_values(key, value, source)
        converted[key] = value.to(ref.dtype)
    model.load_state_dict(converted, strict=True)
    return extras


def _read(source: Any, allow_pickle: bool) -> tuple[str, Any]:
    if isinstance(source, Mapping):
        return "<state dict>", source
    if not isinstance(source, str | os.PathLike):
        raise TypeError(f"expected a checkpoint path or a state dict, got {type(source).__name__}")
    path = Path(source)
    if not path.is_file():
        raise ReferenceCheckpointError(f"{path}: no such checkpoint file")
    try:
        return str(path), torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not allow_pickle:
            first = str(err).strip().splitlines()[0][:200]
            raise ReferenceCheckpointError(
                f"{path}: holds Python objects beyond tensors and plain containers ({first}); "
                "autobin does not unpickle arbitrary objects. If you trust this file, pass "
                "allow_pickle=True (unpickling can run code from the file)"
            ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise ReferenceCheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: "
            f"{str(err).strip()[:200]}); the file is damaged or of another format"
        ) from None
    warnings.warn(
        f"{path}: unpickling with allow_pickle=True; this runs any code the file contains",
        UnsafePickleWarning,
        stacklevel=3,
    )
    return str(path), torch.load(path, map_location="cpu", weights_only=False)


def _unwrap(checkpoint: Any, source: str) -> tuple[Mapping[str, Any], dict[str, Any]]:
    if not isinstance(checkpoint, Mapping):
        raise ReferenceCheckpointError(
            f"{source}: holds a {type(checkpoint).__name__}, not a state dict or "
            "{'state_dict': ...}"
        )
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, Mapping) or not state:
        raise ReferenceCheckpointError(f"{source}: 'state_dict' is empty or not a mapping")
    extras = {}
    if state is not checkpoint:
        extras = {k: v for k, v in checkpoint.items() if isinstance(v, int | float | str)}
    return state, extras


def _check_model(model: nn.Module, source: str) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    layers = {n: m for n, m in model.named_modules() if isinstance(m, BinaryLayer)}
    if not layers:
        raise ReferenceCheckpointError(
            f"{source}: the model has no binary layers; binarize it first with "
            "autobin.binarize(model, recipe='adabin-reference')"
        )
    for name, layer in layers.items():
        adabin = isinstance(layer, AdaBinBinarizers)
        if not adabin or layer.act_form != "code" or layer.frozen:
            what = "frozen" if layer.frozen else f"method {layer.method!r}"
            if adabin and not layer.frozen:
                what = f"act_form {layer.act_form!r}"
            raise ReferenceCheckpointError(
                f"{source}: binary layer {name!r} has {what}, but released checkpoints need "
                "trainable AdaBin layers with the code activation form; binarize the float "
                "model with recipe='adabin-reference'"
            )


def _check_values(key: str, value: torch.Tensor, source: str) -> None:
    """Refuse NaN/infinite floats, and an activation scale alpha_a that is not positive."""
    if not value.is_floating_point():
        return
    if not bool(torch.isfinite(value).all()):
        raise ReferenceCheckpointError(
            f"{source}: {key!r} holds NaN or infinite values; the checkpoint is damaged or "
            "its training diverged, so it cannot give a working model"
        )
    if key.endswith("act_alpha") and not bool((value > 0).all()):
        raise ReferenceCheckpointError(
            f"{source}: {key!r} (released 'binary_a.alpha_a') is {value.flatten().tolist()}, "
            "but the activation set's scale alpha_a must be positive (it is half the distance "
            "between the two binary values); the checkpoint is damaged or not AdaBin's"
        )


def _strip_prefix(key: str, state: Mapping[str, Any]) -> str:
    if all(k.startswith(_PREFIX) for k in state):
        return key[len(_PREFIX) :]
    return key


def _rename(key: str) -> str:
    for released, ours in RENAMES:
        if key == released or key.endswith("." + released):
            return key[: len(key) - len(released)] + ours
    return key


def _is_renamed(key: str) -> bool:
    return any(key.endswith("." + ours) or key == ours for _, ours in RENAMES)


def _few(keys: list[str]) -> str:
    if not keys:
        return "none"
    return ", ".join(repr(k) for k in keys[:6]) + (
        f" (+{len(keys) - 6} more)" if len(keys) > 6 else ""
    )


__all__ = [
    "RENAMES",
    "ReferenceCheckpointError",
    "UnsafePickleWarning",
    "load_reference_checkpoint",
]
