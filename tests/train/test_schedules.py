"""Schedules: weight-decay groups, lr decay, two-step switch, ede schedule."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Subset

from autobin.data import load_dataset
from autobin.nn import AdaBinConv2d, AdaBinLinear, Maxout
from autobin.quantizers import ede_schedule
from autobin.train import Callback, LoopState, TrainConfig, finetune
from autobin.train.schedules import (
    apply_epoch_schedule,
    build_optimizer,
    lr_factor,
    split_weight_decay,
)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.conv = AdaBinConv2d(4, 4, 3, padding=1, weight_estimator="ede")
        self.act = Maxout(4)
        self.norm = nn.LayerNorm(4)
        self.fc = AdaBinLinear(4, 4)
        self.head = nn.Linear(4, 10)
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv(self.bn(self.stem(x))))
        x = self.norm(x.mean((2, 3)))
        return self.head(self.fc(x)) * self.scale


def _names(model: nn.Module, params: list[nn.Parameter]) -> set[str]:
    ids = {id(p) for p in params}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_weight_decay_groups_exclude_sets_gammas_norms_biases() -> None:
    model = _Net()
    decay, no_decay = split_weight_decay(model)
    assert _names(model, decay) == {"stem.weight", "conv.weight", "fc.weight", "head.weight"}
    assert _names(model, no_decay) == {
        "bn.weight", "bn.bias", "conv.bias", "conv.act_alpha", "conv.act_beta",
        "act.gamma_pos", "act.gamma_neg", "norm.weight", "norm.bias",
        "fc.bias", "fc.act_alpha", "fc.act_beta", "head.bias", "scale",
    }  # fmt: skip
    opt = build_optimizer(model, TrainConfig(weight_decay=0.05))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    sgd = build_optimizer(model, TrainConfig(optimizer="sgd", lr=0.1))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9


def test_timm_no_weight_decay_names_are_respected() -> None:
    class WithToken(_Net):
        def __init__(self) -> None:
            super().__init__()
            self.pos_embed = nn.Parameter(torch.zeros(1, 4, 4))

        def no_weight_decay(self) -> set[str]:
            return {"pos_embed"}

    model = WithToken()
    _, no_decay = split_weight_decay(model)
    assert "pos_embed" in _names(model, no_decay)


def test_lr_schedules() -> None:
    adam = TrainConfig(epochs=4)
    assert [lr_factor(s, 10, adam) for s in (0, 10, 20, 39)] == pytest.approx(
        [1.0, 0.75, 0.5, 1 / 40]
    )
    sgd = TrainConfig(epochs=2, optimizer="sgd")
    assert lr_factor(0, 10, sgd) == pytest.approx(1.0)
    assert lr_factor(10, 10, sgd) == pytest.approx(0.5)
    assert lr_factor(15, 10, sgd) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.75)))
    # Two-step: each step decays over its own epochs.
    two = TrainConfig(epochs=4, two_step=True)
    assert two.step1_epochs == 2
    assert [lr_factor(s, 10, two) for s in (0, 10, 20, 30)] == pytest.approx([1, 0.5, 1, 0.5])


def test_apply_epoch_schedule_two_step_and_ede() -> None:
    model = _Net()
    config = TrainConfig(epochs=4, two_step=True, weight_decay=1e-5, step2_weight_decay=0.0)
    opt = build_optimizer(model, config)
    opt.state[model.conv.weight]["exp_avg"] = torch.zeros(1)
    phase = apply_epoch_schedule(model, opt, 1, config)
    assert phase.step == 1 and not model.conv.binarize_weights and not model.fc.binarize_weights
    assert model.conv.binarize_activations
    assert opt.param_groups[0]["weight_decay"] == 1e-5
    assert len(opt.state) == 1
    phase = apply_epoch_schedule(model, opt, 2, config)
    assert phase.step == 2 and model.conv.binarize_weights and model.fc.binarize_weights
    assert opt.param_groups[0]["weight_decay"] == 0.0
    assert len(opt.state) == 0  # fresh optimizer state for step 2
    # ede over the two epochs of step 2; the ste layer is left alone.
    assert (model.conv.ede_t, model.conv.ede_k) == pytest.approx(ede_schedule(0, 2))
    apply_epoch_schedule(model, opt, 3, config)
    assert (model.conv.ede_t, model.conv.ede_k) == pytest.approx(ede_schedule(1, 2))
    assert (model.fc.ede_t, model.fc.ede_k) == (0.1, 10.0)


class _Record(Callback):
    def __init__(self) -> None:
        self.flags: list[tuple[int, bool, bool]] = []

    def on_epoch_start(self, state: LoopState) -> None:
        layer = state.model[3]
        self.flags.append((state.epoch, layer.binarize_weights, layer.binarize_activations))


def test_two_step_run_switches_binarize_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    teacher = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10),
    )  # fmt: skip
    student = copy.deepcopy(teacher)
    student[3] = AdaBinConv2d.from_float(teacher[3])
    train = Subset(load_dataset("digits", "train"), range(64))
    record = _Record()
    result = finetune(student, teacher, train, None, epochs=3, two_step=True,
                      step1_fraction=0.34, batch_size=32, out_dir=tmp_path, progress=False,
                      plots=False, callbacks=[record])  # fmt: skip
    assert record.flags == [(0, False, True), (1, True, True), (2, True, True)]
    assert [r["phase"] for r in result.history] == [1, 2, 2]
    assert student[3].binarize_weights
