"""Optimizers, learning-rate schedules and the per-epoch binarization schedule.

Everything here is a pure function of the :class:`~autobin.train.config.TrainConfig` and the
epoch/step counters, so a resumed run re-derives exactly the state an uninterrupted run had.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ..nn import BinaryLayer
from .config import TrainConfig

#: Parameter names (last dotted component) never decayed: AdaBin activation set and Maxout slopes.
NO_DECAY_PARAM_NAMES: frozenset[str] = frozenset(
    {"act_alpha", "act_beta", "gamma_pos", "gamma_neg"}
)

_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel``/``DataParallel`` wrapper, else ``model``."""
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    return model.module if isinstance(model, wrappers) else model


def binary_layers(model: nn.Module) -> Iterator[tuple[str, BinaryLayer]]:
    """``(name, module)`` of every binary layer."""
    for name, module in unwrap_model(model).named_modules():
        if isinstance(module, BinaryLayer):
            yield name, module


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, _NORM_TYPES) or "norm" in type(module).__name__.lower()


def split_weight_decay(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Split trainable parameters into ``(decay, no_decay)``.

    Not decayed: biases, every parameter of a normalization layer, the AdaBin activation set
    ``act_alpha``/``act_beta``, Maxout's ``gamma_pos``/``gamma_neg``, 0-d scalars, and the names a
    timm model lists in ``no_weight_decay()`` (position embeddings, class tokens).
    """
    model = unwrap_model(model)
    skip_names: set[str] = set()
    if hasattr(model, "no_weight_decay"):
        skip_names = set(model.no_weight_decay())
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        norm = _is_norm(module)
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            full = f"{module_name}.{param_name}" if module_name else param_name
            excluded = (
                norm
                or param_name == "bias"
                or param_name in NO_DECAY_PARAM_NAMES
                or param.dim() == 0
                or full in skip_names
            )
            (no_decay if excluded else decay).append(param)
    return decay, no_decay


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam or SGD over two parameter groups (group 0 decayed, group 1 not).

    Raises:
        ValueError: the model has no trainable parameters.
    """
    decay, no_decay = split_weight_decay(model)
    if not decay and not no_decay:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)


@dataclass(frozen=True)
class Phase:
    """What the binarization schedule prescribes for one epoch.

    Attributes:
        step: 1 or 2 in a two-step run (weights float in step 1), else 0.
        first_epoch: first epoch of this phase; ``last_epoch + 1 - first_epoch`` epochs long.
        end_epoch: one past the last epoch of this phase.
    """

    step: int
    first_epoch: int
    end_epoch: int

    @property
    def binarize_weights(self) -> bool:
        """Whether weights are binarized in this phase."""
        return self.step != 1


def phase_of(epoch: int, config: TrainConfig) -> Phase:
    """The schedule phase that ``epoch`` (0-based) belongs to."""
    if not config.two_step:
        return Phase(0, 0, config.epochs)
    split = config.step1_epochs
    return Phase(1, 0, split) if epoch < split else Phase(2, split, config.epochs)


def lr_factor(step: int, steps_per_epoch: int, config: TrainConfig) -> float:
    """Learning-rate multiplier at optimizer step ``step`` (0-based, before the update).

    Adam: linear decay from 1 to 0 over the phase; SGD: cosine decay from 1 to 0. With the
    two-step schedule each step decays over its own epochs.
    """
    epoch = min(step // max(steps_per_epoch, 1), config.epochs - 1)
    phase = phase_of(epoch, config)
    start = phase.first_epoch * steps_per_epoch
    total = max((phase.end_epoch - phase.first_epoch) * steps_per_epoch, 1)
    progress = min(max((step - start) / total, 0.0), 1.0)
    if config.optimizer == "adam":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, steps_per_epoch: int, config: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step ``LambdaLR`` following :func:`lr_factor`."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps_per_epoch, config)
    )


def apply_epoch_schedule(
    model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, config: TrainConfig
) -> Phase:
    """Set the binary layers and optimizer for ``epoch``; call at the start of every epoch.

    * two-step: ``binarize_weights`` is False in step 1 and True in step 2 (activations are
      binarized in both); step 2 uses ``step2_weight_decay`` and, at its first epoch, starts
      from a fresh optimizer state (as ReActNet builds a new optimizer for step 2).
    * ``ede`` layers get ``set_ede(t, k)`` from :func:`autobin.quantizers.ede_schedule` over
      the epochs in which weights are binarized.
    """
    phase = phase_of(epoch, config)
    layers = [m for _, m in binary_layers(model)]
    if config.two_step:
        for layer in layers:
            layer.binarize_weights = phase.binarize_weights
            layer.binarize_activations = True
        wd = config.weight_decay
        if phase.step == 2 and config.step2_weight_decay is not None:
            wd = config.step2_weight_decay
        optimizer.param_groups[0]["weight_decay"] = wd
        if phase.step == 2 and epoch == phase.first_epoch:
            optimizer.state.clear()
    if config.ede_schedule and phase.binarize_weights:
        ede = [m for m in layers if getattr(m, "weight_estimator", None) == "ede"]
        if ede:
            from ..quantizers import ede_schedule

            span = phase.end_epoch - phase.first_epoch
            t, k = ede_schedule(
                epoch - phase.first_epoch, span, t_min=config.ede_t_min, t_max=config.ede_t_max
            )
            for layer in ede:
                layer.set_ede(t, k)
    return phase
