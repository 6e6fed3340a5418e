"""Distillation losses: values against closed forms, gradients, feature taps."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autobin.train.losses import (
    DistillationLoss,
    FeatureTaps,
    distribution_loss,
    match_module_names,
    normalized_mse,
)


def _kl_closed_form(zs: list[list[float]], zt: list[list[float]], temp: float) -> float:
    total = 0.0
    for row_s, row_t in zip(zs, zt):
        es = [math.exp(v / temp) for v in row_s]
        et = [math.exp(v / temp) for v in row_t]
        ps = [v / sum(es) for v in es]
        pt = [v / sum(et) for v in et]
        total += sum(b * (math.log(b) - math.log(a)) for a, b in zip(ps, pt))
    return temp**2 * total / len(zs)


@pytest.mark.parametrize("temp", [1.0, 2.0, 4.0])
def test_distribution_loss_matches_closed_form_with_t_squared(temp: float) -> None:
    zs = [[1.0, 2.0, 0.5], [-1.0, 0.0, 3.0]]
    zt = [[0.3, 2.5, -0.5], [2.0, 0.1, 0.2]]
    got = distribution_loss(torch.tensor(zs), torch.tensor(zt), temp)
    assert got.item() == pytest.approx(_kl_closed_form(zs, zt, temp), rel=1e-5)


def test_distribution_loss_t_squared_scaling_is_explicit() -> None:
    zs, zt = torch.tensor([[1.0, -2.0, 0.5]]), torch.tensor([[0.0, 1.0, 2.0]])
    temp = 3.0
    p_t = F.softmax(zt / temp, -1)
    kl = (p_t * (p_t.log() - F.log_softmax(zs / temp, -1))).sum()
    assert distribution_loss(zs, zt, temp).item() == pytest.approx(9.0 * kl.item(), rel=1e-5)


def test_distribution_loss_zero_when_equal_and_no_teacher_grad() -> None:
    z = torch.randn(5, 7)
    assert distribution_loss(z, z.clone(), 2.0).item() == pytest.approx(0.0, abs=1e-6)
    zs = torch.randn(4, 3, requires_grad=True)
    zt = torch.randn(4, 3, requires_grad=True)
    distribution_loss(zs, zt, 2.0).backward()
    assert zs.grad is not None and zs.grad.abs().sum() > 0
    assert zt.grad is None


def test_distribution_loss_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="same classes"):
        distribution_loss(torch.zeros(2, 3), torch.zeros(2, 4))


def test_normalized_mse_closed_form() -> None:
    a = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    b = torch.tensor([[6.0, 8.0], [0.0, 2.0]])
    # Row 0: same direction -> 0. Row 1: orthogonal unit vectors -> |e1 - e2|^2 = 2.
    assert normalized_mse(a, b).item() == pytest.approx(1.0, abs=1e-6)
    s, t = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    cos = F.cosine_similarity(s.flatten(1), t.flatten(1), dim=1)
    assert normalized_mse(s, t).item() == pytest.approx((2 - 2 * cos).mean().item(), rel=1e-5)
    assert normalized_mse(s, 5.0 * s).item() == pytest.approx(0.0, abs=1e-6)


def test_cross_entropy_path_and_weights() -> None:
    logits, targets = torch.randn(6, 4), torch.randint(0, 4, (6,))
    ce_only = DistillationLoss(kd_weight=0.0, ce_weight=1.0)
    assert not ce_only.needs_teacher
    terms = ce_only(logits, targets)
    assert terms.total.item() == pytest.approx(F.cross_entropy(logits, targets).item(), rel=1e-6)
    assert set(terms.parts) == {"ce"}
    teacher = torch.randn(6, 4)
    mixed = DistillationLoss(kd_weight=0.5, ce_weight=2.0, temperature=2.0)
    terms = mixed(logits, targets, teacher)
    expected = 0.5 * distribution_loss(logits, teacher, 2.0) + 2.0 * F.cross_entropy(
        logits, targets
    )
    assert terms.total.item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="teacher logits"):
        mixed(logits, targets)


def test_feature_taps_and_name_matching() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Sequential(nn.Linear(3, 2)))
    assert match_module_names(model, ["re:2.*"]) == ["2", "2.0"]
    assert match_module_names(model, ["0"]) == ["0"]
    with pytest.raises(ValueError, match=r"matches no module.*Available names"):
        match_module_names(model, ["layer9"])
    with FeatureTaps(model, ["0", "2.0"]) as taps:
        x = torch.randn(5, 4)
        out = model(x)
        feats = taps.pop()
    assert torch.equal(feats["2.0"], out)
    assert torch.equal(feats["0"], model[0](x))
    model(x)
    assert taps.outputs == {}  # hooks removed
    loss = DistillationLoss(kd_weight=0.0, feature_weight=1.0)
    terms = loss(out, torch.zeros(5, dtype=torch.long), None, feats, feats)
    assert terms.parts["feature"].item() == pytest.approx(0.0, abs=1e-6)
