"""The progressive ``ede`` schedule of AdaBin's released training code (from IR-Net)."""

from __future__ import annotations

import math


def ede_schedule(
    epoch: float, epochs: int, t_min: float = 1e-3, t_max: float = 10.0
) -> tuple[float, float]:
    """Temperature ``t`` and scale ``k`` of the error-decay estimator at ``epoch``.

    ``t(e) = 10 ** (log10 t_min + (log10 t_max - log10 t_min) * e / E)`` grows log-linearly from
    ``t_min`` at epoch 0 to ``t_max`` at epoch ``E``; ``k = 1/t`` while ``t < 1``, else ``k = 1``
    (AdaBin, Tu et al., ECCV 2022; IR-Net, Qin et al., CVPR 2020).

    Args:
        epoch: current (possibly fractional) epoch, ``0 <= epoch <= epochs``.
        epochs: total number of epochs ``E`` (positive).
        t_min: temperature at the start (positive).
        t_max: temperature at the end (``>= t_min``).

    Returns:
        ``(t, k)``.
    """
    if epochs <= 0:
        raise ValueError(f"ede_schedule needs epochs > 0, got {epochs}")
    if not (0 < t_min <= t_max):
        raise ValueError(f"ede_schedule needs 0 < t_min <= t_max, got t_min={t_min}, t_max={t_max}")
    if not (0 <= epoch <= epochs):
        raise ValueError(f"ede_schedule: epoch {epoch} is outside [0, {epochs}]")
    lo, hi = math.log10(t_min), math.log10(t_max)
    if epoch == 0:  # the endpoints are exact (10 ** log10(v) may differ from v by an ulp)
        t = float(t_min)
    elif epoch == epochs:
        t = float(t_max)
    else:
        t = 10.0 ** (lo + (hi - lo) * epoch / epochs)
    k = 1.0 / t if t < 1.0 else 1.0
    return t, k
