"""Distillation terms of BinarizedDetector: exact values against hand-computed references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from autobin.integrations.mmdet import MMDetIntegrationError
from autobin.integrations.mmdet.distill import (
    DistillConfig,
    bernoulli_kl,
    cls_loss,
    distill_losses,
    feature_loss,
    foreground_cls_loss,
)

pytestmark = pytest.mark.mmdet


def test_bernoulli_kl_matches_the_formula() -> None:
    zs = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    zt = torch.tensor([[1.5, -0.5], [-1.0, 0.3]])
    expected = 0.0
    for s_row, t_row in zip(zs.tolist(), zt.tolist()):
        for s, t in zip(s_row, t_row):
            p, q = 1 / (1 + math.exp(-t)), 1 / (1 + math.exp(-s))
            expected += p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))
    assert bernoulli_kl(zs, zt, 1.0).item() == pytest.approx(expected / 2, rel=1e-6)
    assert bernoulli_kl(zt, zt, 2.0).item() == pytest.approx(0.0, abs=1e-7)


def test_softmax_cls_loss_is_kl_per_anchor() -> None:
    torch.manual_seed(0)
    channels, anchors = 3, 2
    s = torch.randn(2, anchors * channels, 4, 5)
    t = torch.randn(2, anchors * channels, 4, 5)
    rows_s = s.permute(0, 2, 3, 1).reshape(-1, channels)
    rows_t = t.permute(0, 2, 3, 1).reshape(-1, channels)
    kl = (F.softmax(rows_t, -1) * (F.log_softmax(rows_t, -1) - F.log_softmax(rows_s, -1))).sum(-1)
    got = cls_loss([s, s], [t, t], channels=channels, sigmoid=False, temperature=1.0)
    assert got.item() == pytest.approx(kl.mean().item(), rel=1e-5)


def test_foreground_cls_loss_weights_each_anchor_by_the_teachers_foreground() -> None:
    # one image, one anchor per position, 2 positions, 3 classes (softmax: background last)
    t = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 4.0]])  # an object; near-certain background
    s = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    as_map = lambda rows: rows.T.reshape(1, 3, 1, 2)  # noqa: E731  (N, A*C, H, W)
    kl, weight = [], []
    for s_row, t_row in zip(s.tolist(), t.tolist()):
        pt = [math.exp(v) / sum(math.exp(u) for u in t_row) for v in t_row]
        ps = [math.exp(v) / sum(math.exp(u) for u in s_row) for v in s_row]
        kl.append(sum(p * math.log(p / q) for p, q in zip(pt, ps)))
        weight.append(1 - pt[-1])
    expected = sum(k * w for k, w in zip(kl, weight)) / sum(weight)
    got = foreground_cls_loss([as_map(s)], [as_map(t)], channels=3, sigmoid=False)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    plain = cls_loss([as_map(s)], [as_map(t)], channels=3, sigmoid=False, temperature=1.0)
    assert plain.item() == pytest.approx(sum(kl) / 2, rel=1e-5)
    assert got.item() < plain.item()  # the background anchor's large KL counts for little
    # sigmoid heads: weight = the teacher's highest class probability
    zs, zt = torch.tensor([[0.5, -1.0], [2.0, 0.0]]), torch.tensor([[1.5, -0.5], [-3.0, -2.0]])
    w = torch.sigmoid(zt).amax(-1)
    rows = torch.stack([bernoulli_kl(zs[i : i + 1], zt[i : i + 1], 1.0) for i in range(2)])
    got = foreground_cls_loss(
        [zs.T.reshape(1, 2, 1, 2)], [zt.T.reshape(1, 2, 1, 2)], channels=2, sigmoid=True
    )
    assert got.item() == pytest.approx(((rows * w).sum() / w.sum()).item(), rel=1e-5)
    with pytest.raises(MMDetIntegrationError, match="score levels"):
        foreground_cls_loss([as_map(s)], [], channels=3, sigmoid=False)


def test_feature_loss_and_weights() -> None:
    a = [torch.ones(2, 4, 3, 3), torch.ones(2, 8, 2, 2)]
    assert feature_loss(a, [x * 5 for x in a]).item() == pytest.approx(0.0, abs=1e-6)
    assert feature_loss(a, [-x for x in a]).item() == pytest.approx(4.0, rel=1e-6)
    config = DistillConfig(feature_weight=0.5, cls_weight=0.0)
    losses = distill_losses(config, a, [-x for x in a], [], [], channels=1, sigmoid=True)
    assert set(losses) == {"loss_distill_feat"} and losses["loss_distill_feat"].item() == 2.0
    with pytest.raises(MMDetIntegrationError, match="feature levels"):
        feature_loss(a, a[:1])


def test_distill_config_errors() -> None:
    assert DistillConfig.from_dict({}) == DistillConfig(1.0, 1.0, 1.0)
    with pytest.raises(MMDetIntegrationError, match=r"unknown keys \['feat'\]"):
        DistillConfig.from_dict({"feat": 1})
    with pytest.raises(MMDetIntegrationError, match="cls_weight must be a number >= 0"):
        DistillConfig.from_dict({"cls_weight": -1})
    assert not DistillConfig.from_dict({"feature_weight": 0, "cls_weight": 0}).enabled
