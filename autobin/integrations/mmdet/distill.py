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
    return bernoulli_kl_rows(student_logits, teacher_logits, t).mean()


def bernoulli_kl_rows(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, t: float
) -> torch.Tensor:
    """:func:`bernoulli_kl` per row (summed over classes, times ``T^2``), not averaged."""
    zs, zt = student_logits.float() / t, teacher_logits.detach().float() / t
    p = torch.sigmoid(zt)
    kl = p * (F.logsigmoid(zt) - F.logsigmoid(zs)) + (1 - p) * (
        F.logsigmoid(-zt) - F.logsigmoid(-zs)
    )
    return kl.sum(dim=-1) * t**2


def softmax_kl_rows(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(teacher) || softmax(student))`` per row (T = 1): the rows whose mean is
    :func:`autobin.train.distribution_loss`."""
    log_t = F.log_softmax(teacher_logits.detach().float(), dim=-1)
    log_s = F.log_softmax(student_logits.float(), dim=-1)
    return (log_t.exp() * (log_t - log_s)).sum(dim=-1)


def foreground_cls_loss(
    student: Sequence[torch.Tensor],
    teacher: Sequence[torch.Tensor],
    *,
    channels: int,
    sigmoid: bool,
) -> torch.Tensor:
    """Mean over levels of the class-score KL per anchor (T = 1), weighted by how much the
    teacher sees an object there.

    An anchor's weight is the teacher's foreground probability: ``1 - p(background)`` for a
    softmax head (mmdet puts background last), the highest class probability for a sigmoid
    head. Most anchors are confident background, so the plain mean of :func:`cls_loss` hardly
    moves when the scores of the anchors that detect something go wrong (binarizing SSD's first
    class-prediction conv of a trained detector: plain mean 0.001, this 0.37, per level mean).
    """
    _check_levels(student, teacher)
    terms = []
    for s, t in zip(student, teacher):
        s2, t2 = _per_anchor(s, channels), _per_anchor(t, channels)
        if sigmoid:
            kl = bernoulli_kl_rows(s2, t2, 1.0)
            weight = torch.sigmoid(t2.float()).amax(dim=-1)
        else:
            kl = softmax_kl_rows(s2, t2)
            weight = 1.0 - F.softmax(t2.float(), dim=-1)[:, -1]
        terms.append((kl * weight).sum() / weight.sum().clamp_min(1e-12))
    return torch.stack(terms).mean()


def _check_levels(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor]) -> None:
    if len(student) != len(teacher) or not student:
        raise MMDetIntegrationError(
            f"student has {len(student)} score levels, teacher {len(teacher)}; the teacher must "
            "be the same detector architecture as the student"
        )


def cls_loss(
    student: Sequence[torch.Tensor],
    teacher: Sequence[torch.Tensor],
    *,
    channels: int,
    sigmoid: bool,
    temperature: float,
) -> torch.Tensor:
    """Mean over levels of the KL between teacher and student classification scores."""
    _check_levels(student, teacher)
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
    "bernoulli_kl_rows",
    "cls_loss",
    "distill_losses",
    "feature_loss",
    "foreground_cls_loss",
    "softmax_kl_rows",
]
