"""Distillation losses between a binary detector (student) and its float teacher.

Two terms, each added to mmdet's detection losses under its own name (so mmengine logs it):

* ``loss_distill_feat``: feature distillation on the neck outputs (the backbone's when the
  detector has no neck): :func:`autobin.train.losses.normalized_mse` per pyramid level,
  averaged over levels, times ``feature_weight``;
* ``loss_distill_cls``: KL divergence between the teacher's and the student's classification
  scores of every anchor and level, averaged over levels, times ``cls_weight``. A softmax head
  (SSD: ``num_classes + 1`` channels per anchor) uses :func:`autobin.train.losses.
  distribution_loss` over each anchor's classes; a sigmoid head (RetinaNet) uses the Bernoulli
  KL of every class score, summed over classes and averaged over anchors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ...train.losses import distribution_loss, normalized_mse
from .errors import MMDetIntegrationError

DISTILL_KEYS = ("feature_weight", "cls_weight", "temperature")


@dataclass(frozen=True)
class DistillConfig:
    """Weights of the distillation terms (``distill=dict(...)`` of ``BinarizedDetector``).

    Attributes:
        feature_weight: weight of ``loss_distill_feat`` (0 turns it off).
        cls_weight: weight of ``loss_distill_cls`` (0 turns it off).
        temperature: softmax/sigmoid temperature of the classification KL.
    """

    feature_weight: float = 1.0
    cls_weight: float = 1.0
    temperature: float = 1.0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> DistillConfig:
        data = dict(data or {})
        unknown = sorted(set(data) - set(DISTILL_KEYS))
        if unknown:
            raise MMDetIntegrationError(
                f"distill has unknown keys {unknown}; valid keys are {list(DISTILL_KEYS)}, e.g. "
                "distill=dict(feature_weight=1.0, cls_weight=1.0, temperature=1.0)"
            )
        values = {}
        for key, value in data.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise MMDetIntegrationError(f"distill.{key} must be a number >= 0, got {value!r}")
            values[key] = float(value)
        if values.get("temperature", 1.0) <= 0:
            raise MMDetIntegrationError("distill.temperature must be > 0")
        return cls(**values)

    @property
    def enabled(self) -> bool:
        return self.feature_weight > 0 or self.cls_weight > 0


def _levels(features: Any) -> list[torch.Tensor]:
    if isinstance(features, torch.Tensor):
        return [features]
    return [f for f in features if isinstance(f, torch.Tensor)]


def feature_loss(student: Any, teacher: Any) -> torch.Tensor:
    """Mean over levels of :func:`normalized_mse` between student and teacher features."""
    s_levels, t_levels = _levels(student), _levels(teacher)
    if len(s_levels) != len(t_levels) or not s_levels:
        raise MMDetIntegrationError(
            f"student has {len(s_levels)} feature levels, teacher {len(t_levels)}; the teacher "
            "must be the same detector architecture as the student"
        )
    return torch.stack([normalized_mse(s, t) for s, t in zip(s_levels, t_levels)]).mean()


def _per_anchor(scores: torch.Tensor, channels: int) -> torch.Tensor:
    """``(N, A*C, H, W)`` -> ``(N*H*W*A, C)``, as mmdet's heads reshape their scores."""
    return scores.permute(0, 2, 3, 1).reshape(-1, channels)


def bernoulli_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, t: float
) -> torch.Tensor:
    r"""KL between independent Bernoulli class scores, summed over classes, mean over rows.

    .. math::

        p = \sigma(z_t / T), \quad q = \sigma(z_s / T), \quad
        L = T^2 \frac{1}{N} \sum_{n, c} p \log\frac{p}{q} + (1 - p) \log\frac{1 - p}{1 - q}
    """
    zs, zt = student_logits.float() / t, teacher_logits.detach().float() / t
    p = torch.sigmoid(zt)
    kl = p * (F.logsigmoid(zt) - F.logsigmoid(zs)) + (1 - p) * (
        F.logsigmoid(-zt) - F.logsigmoid(-zs)
    )
    return kl.sum(dim=-1).mean() * t**2


def cls_loss(
    student: Sequence[torch.Tensor],
    teacher: Sequence[torch.Tensor],
    *,
    channels: int,
    sigmoid: bool,
    temperature: float,
) -> torch.Tensor:
    """Mean over levels of the KL between teacher and student classification scores."""
    if len(student) != len(teacher) or not student:
        raise MMDetIntegrationError(
            f"student has {len(student)} score levels, teacher {len(teacher)}; the teacher must "
            "be the same detector architecture as the student"
        )
    terms = []
    for s, t in zip(student, teacher):
        s2, t2 = _per_anchor(s, channels), _per_anchor(t, channels)
        if sigmoid:
            terms.append(bernoulli_kl(s2, t2, temperature))
        else:
            terms.append(distribution_loss(s2, t2, temperature))
    return torch.stack(terms).mean()


def distill_losses(
    config: DistillConfig,
    student_feats: Any,
    teacher_feats: Any,
    student_scores: Sequence[torch.Tensor],
    teacher_scores: Sequence[torch.Tensor],
    *,
    channels: int,
    sigmoid: bool,
) -> dict[str, torch.Tensor]:
    """The weighted distillation terms, by the names mmengine logs them under."""
    losses: dict[str, torch.Tensor] = {}
    if config.feature_weight > 0:
        losses["loss_distill_feat"] = config.feature_weight * feature_loss(
            student_feats, teacher_feats
        )
    if config.cls_weight > 0:
        losses["loss_distill_cls"] = config.cls_weight * cls_loss(
            student_scores,
            teacher_scores,
            channels=channels,
            sigmoid=sigmoid,
            temperature=config.temperature,
        )
    return losses


__all__ = [
    "DistillConfig",
    "bernoulli_kl",
    "cls_loss",
    "distill_losses",
    "feature_loss",
]
