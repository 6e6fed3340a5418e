"""What the search compares between the float model and each binarized configuration.

An :class:`Objective` knows, for one kind of model, three things: how to turn the user's
calibration data into one batch of model inputs, which outputs of the model to compare, and the
distillation loss between a configuration's outputs and the float model's. The search itself
(:mod:`.sensitivity`, :mod:`.api`) is the same for every kind.

* :class:`ClassifierObjective` (the default, any model returning ``(N, classes)`` logits): the
  KL divergence of the softmax from the float model's (:func:`autobin.train.distribution_loss`,
  T = 1), on images from a dataset name, a Dataset, a DataLoader or a tensor;
* other kinds register their own, keyed by model family name (:func:`register_objective`):
  ``autobin.integrations.mmdet`` registers the detectors' (the feature distillation their
  students train with, class scores weighted by the teacher's foreground probability, box
  regressions).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..graph import family_of
from ..train.losses import distribution_loss
from .calibration import CalibrationData, calibration_images, logits


class Objective:
    """The comparison one search makes (subclass it for a model family)."""

    loss_name = "loss"
    """How the loss is named in the table, the summary and the recipe's comments."""

    def images(self, model: nn.Module, data: Any, size: int, seed: int) -> torch.Tensor:
        """Up to ``size`` model inputs from ``data`` as one batch, chosen by ``seed``."""
        raise NotImplementedError

    def outputs(self, model: nn.Module, images: torch.Tensor, batch_size: int) -> Any:
        """What is compared: ``model``'s outputs on ``images`` (eval mode, no gradients).

        Raises:
            SearchError: the model does not give the outputs this objective compares.
        """
        raise NotImplementedError

    def loss(self, outputs: Any, reference: Any) -> float:
        """The distillation loss of ``outputs`` against the float model's ``reference``."""
        raise NotImplementedError


class ClassifierObjective(Objective):
    """Class logits ``(N, classes)``: KL divergence of the softmax (T = 1)."""

    loss_name = "KL"

    def images(self, model: nn.Module, data: CalibrationData, size: int, seed: int):
        return calibration_images(data, size, seed)

    def outputs(self, model: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
        return logits(model, images, batch_size)

    def loss(self, outputs: torch.Tensor, reference: torch.Tensor) -> float:
        return float(distribution_loss(outputs, reference))


CLASSIFIER = ClassifierObjective()
_OBJECTIVES: dict[str, Objective] = {}


def register_objective(family: str, objective: Objective) -> None:
    """Use ``objective`` for models of the family named ``family`` (see
    :func:`autobin.graph.family_of`); a later registration replaces an earlier one."""
    _OBJECTIVES[family] = objective


def objective_for(model: nn.Module) -> Objective:
    """The objective registered for ``model``'s family, else the classifier's."""
    return _OBJECTIVES.get(family_of(model).name, CLASSIFIER)


__all__ = [
    "CLASSIFIER",
    "ClassifierObjective",
    "Objective",
    "objective_for",
    "register_objective",
]
