"""What user code sees of a running loop: :class:`LoopState` and the :class:`Callback` hooks.

:func:`call_hook` is how the loop calls them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .config import TrainConfig


@dataclass
class LoopState:
    """What callbacks see. ``epoch`` is 0-based; ``step`` counts optimizer steps taken."""

    epoch: int
    step: int
    batch_index: int
    loss: float
    model: nn.Module
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    metrics: dict[str, float] = field(default_factory=dict)


class Callback:
    """Hooks into the loop; override any of them. Raising stops the run (no checkpoint)."""

    def on_epoch_start(self, state: LoopState) -> None:
        """Before the first batch of an epoch (after the binarization schedule is applied)."""

    def on_step_end(self, state: LoopState) -> None:
        """After each optimizer step."""

    def on_epoch_end(self, state: LoopState) -> None:
        """After evaluation and checkpointing; ``state.metrics`` holds the epoch's record."""


def call_hook(callbacks: Sequence[Any], hook: str, state: LoopState) -> None:
    """Call ``hook`` (e.g. ``"on_step_end"``) on each callback that defines it, in order."""
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None:
            fn(state)
