"""Distillation losses for training a binary student from its float teacher.

* :func:`distribution_loss`: KL divergence between softened teacher and student softmaxes
  (Hinton et al., 2015), the only loss of ReActNet's and AdaBin's two-step ImageNet recipe.
* :func:`normalized_mse`: squared distance of L2-normalized features, for block outputs.
* :class:`FeatureTaps`: forward hooks that capture named block outputs of a model.
* :class:`DistillationLoss`: the weighted sum used by the training loop.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def distribution_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    r"""Knowledge-distillation loss between teacher and student class distributions.

    .. math::

        p_t = \mathrm{softmax}(z_t / T), \quad p_s = \mathrm{softmax}(z_s / T), \quad
        L = T^2 \cdot \frac{1}{N} \sum_{n=1}^{N} \sum_c p_t[n, c]
            \left(\log p_t[n, c] - \log p_s[n, c]\right)

    i.e. ``KL(p_t || p_s)`` averaged over the batch and scaled by ``T^2`` so that its gradient
    magnitude does not shrink as ``T`` grows. It is zero exactly when both softmaxes agree. The
    teacher's logits are treated as constants (no gradient flows to the teacher).

    Reference: G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge in a Neural Network",
    NIPS Deep Learning Workshop 2015; used as the sole loss by ReActNet (Liu et al., ECCV 2020)
    and AdaBin's two-step recipe.

    Args:
        student_logits: ``(N, C)`` student logits ``z_s``.
        teacher_logits: ``(N, C)`` teacher logits ``z_t``.
        temperature: softmax temperature ``T > 0``.

    Returns:
        Scalar loss (float32).
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ in shape; the teacher must predict the same "
            "classes as the student"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)
    kl = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    return kl * temperature**2


def normalized_mse(student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    r"""Feature distillation loss: squared distance between L2-normalized features.

    Each sample's features are flattened to a vector and scaled to unit L2 norm:

    .. math::

        \hat f = \frac{\mathrm{vec}(f)}{\max(\lVert \mathrm{vec}(f) \rVert_2, \epsilon)}, \quad
        L = \frac{1}{N} \sum_{n=1}^{N} \lVert \hat f_s[n] - \hat f_t[n] \rVert_2^2
          = \frac{1}{N} \sum_n 2\,(1 - \cos(f_s[n], f_t[n]))

    Normalizing removes the scale difference between a binary block's output and its float
    counterpart, and summing over features (instead of averaging) keeps the loss in ``[0, 4]``
    whatever the feature size, so one weight suits every layer. The teacher's features are
    treated as constants.

    Reference: the attention/feature-transfer losses of Zagoruyko & Komodakis, "Paying More
    Attention to Attention", ICLR 2017, which also compare L2-normalized feature vectors.

    Args:
        student_features: ``(N, ...)`` student block output.
        teacher_features: teacher block output of the same shape.

    Returns:
        Scalar loss (float32).
    """
    if student_features.shape != teacher_features.shape:
        raise ValueError(
            f"feature shapes differ: student {tuple(student_features.shape)} vs teacher "
            f"{tuple(teacher_features.shape)}; distill only layers whose outputs match"
        )
    s = F.normalize(student_features.float().flatten(1), dim=1)
    t = F.normalize(teacher_features.detach().float().flatten(1), dim=1)
    return (s - t).pow(2).sum(dim=1).mean()


def match_module_names(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Names of ``model``'s submodules selected by ``patterns``, in module order.

    A pattern is an exact module name, or ``"re:<regex>"`` matched against the full name.
    Every pattern must select at least one module.

    Raises:
        ValueError: a pattern selects nothing (the message lists some available names).
    """
    names = [name for name, _ in model.named_modules() if name]
    chosen: set[str] = set()
    for pattern in patterns:
        if pattern.startswith("re:"):
            regex = re.compile(pattern[3:])
            hits = {n for n in names if regex.fullmatch(n)}
        else:
            hits = {pattern} if pattern in names else set()
        if not hits:
            sample = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise ValueError(
                f"feature layer {pattern!r} matches no module of {type(model).__name__}; "
                f"use an exact module name or 're:<regex>'. Available names: {sample}"
            )
        chosen |= hits
    return [n for n in names if n in chosen]


class FeatureTaps:
    """Forward hooks that keep the latest output of selected submodules.

    Use as a context manager, or call :meth:`remove`. Tuple outputs keep their first tensor.
    """

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise ValueError(f"{type(model).__name__} has no submodules named {missing}")
        self.names = list(names)
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles = [modules[n].register_forward_hook(self._hook(n)) for n in self.names]

    def _hook(self, name: str):
        def hook(module: nn.Module, args: object, output: object) -> None:
            if isinstance(output, (tuple, list)):
                output = output[0]
            self.outputs[name] = output  # type: ignore[assignment]

        return hook

    def pop(self) -> dict[str, torch.Tensor]:
        """Return the captured outputs and forget them."""
        out, self.outputs = self.outputs, {}
        return out

    def remove(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.outputs = {}

    def __enter__(self) -> FeatureTaps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


@dataclass
class LossTerms:
    """The total loss and its weighted parts (unweighted values, for logging)."""

    total: torch.Tensor
    parts: dict[str, torch.Tensor]


class DistillationLoss:
    """Weighted sum ``kd_weight * KD + ce_weight * CE + feature_weight * feature``.

    * KD: :func:`distribution_loss` at ``temperature`` (needs teacher logits).
    * CE: ``F.cross_entropy`` of the student logits against labels.
    * feature: mean of :func:`normalized_mse` over the distilled layers.

    Terms with weight 0 are not computed.
    """

    def __init__(
        self,
        kd_weight: float = 1.0,
        ce_weight: float = 0.0,
        feature_weight: float = 0.0,
        temperature: float = 1.0,
    ) -> None:
        self.kd_weight = float(kd_weight)
        self.ce_weight = float(ce_weight)
        self.feature_weight = float(feature_weight)
        self.temperature = float(temperature)

    @property
    def needs_teacher(self) -> bool:
        """Whether any term compares against a teacher."""
        return self.kd_weight > 0 or self.feature_weight > 0

    def __call__(
        self,
        student_logits: torch.Tensor,
        targets: torch.Tensor,
        teacher_logits: torch.Tensor | None = None,
        student_features: dict[str, torch.Tensor] | None = None,
        teacher_features: dict[str, torch.Tensor] | None = None,
    ) -> LossTerms:
        """Compute the weighted loss; see the class docstring."""
        total = student_logits.new_zeros((), dtype=torch.float32)
        parts: dict[str, torch.Tensor] = {}
        if self.kd_weight > 0:
            if teacher_logits is None:
                raise ValueError("kd_weight > 0 needs teacher logits")
            parts["kd"] = distribution_loss(student_logits, teacher_logits, self.temperature)
            total = total + self.kd_weight * parts["kd"]
        if self.ce_weight > 0:
            parts["ce"] = F.cross_entropy(student_logits.float(), targets)
            total = total + self.ce_weight * parts["ce"]
        if self.feature_weight > 0:
            if not student_features or teacher_features is None:
                raise ValueError("feature_weight > 0 needs captured student and teacher features")
            terms = [normalized_mse(f, teacher_features[n]) for n, f in student_features.items()]
            parts["feature"] = torch.stack(terms).mean()
            total = total + self.feature_weight * parts["feature"]
        return LossTerms(total, parts)
