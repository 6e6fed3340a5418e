"""Where and how the model runs: device, autocast precision, memory layout, torch.compile."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from .config import TrainConfig
from .distributed import Ranks


def resolve_device(config: TrainConfig, ranks: Ranks | None = None) -> torch.device:
    """The device ``config.device`` names; ``"auto"`` picks CUDA when available.

    Under several processes on CUDA, each process uses the GPU of its ``LOCAL_RANK`` (set by
    :func:`~autobin.train.distributed.distributed_session`).
    """
    if config.device != "auto":
        device = torch.device(config.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"device {config.device!r} was requested but CUDA is not available; "
                "use device='auto' or 'cpu'"
            )
        if device.type == "cuda" and device.index is None and ranks is not None and ranks.active:
            return torch.device("cuda", torch.cuda.current_device())
        return device
    if torch.cuda.is_available():
        if ranks is not None and ranks.active:
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cuda")
    return torch.device("cpu")


def resolve_precision(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Autocast dtype (``None``: fp32, no autocast)."""
    if config.precision == "fp32":
        return None
    if config.precision == "bf16":
        return torch.bfloat16
    if config.precision == "fp16":
        return torch.float16
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def uses_channels_last(config: TrainConfig, device: torch.device) -> bool:
    """``config.channels_last``, where ``None`` means: on CUDA yes, elsewhere no."""
    if config.channels_last is None:
        return device.type == "cuda"
    return config.channels_last


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    """``torch.autocast`` for ``dtype`` on ``device``, or a no-op context for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_input(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """A batch moved to ``device``, in channels-last layout where asked (4-D input only)."""
    x = x.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def compiled(model: torch.nn.Module) -> Any:
    """``torch.compile(model)``; the module's parameters and state dict are shared with it."""
    return torch.compile(model)


__all__ = [
    "autocast",
    "compiled",
    "resolve_device",
    "resolve_precision",
    "to_input",
    "uses_channels_last",
]
