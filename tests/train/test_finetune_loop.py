"""The training loop: learning, frozen teacher, exact resume, non-finite stop, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_nets import tiny_float_net, tiny_student
from torch import nn
from torch.utils.data import Subset

from autobin.data import load_dataset
from autobin.train import (
    Callback,
    LoopState,
    NonFiniteLossError,
    evaluate,
    finetune,
    load_checkpoint,
    train_float,
)

FAST = {"progress": False, "plots": False, "batch_size": 32, "device": "cpu"}


def _float_net(seed: int = 0) -> nn.Module:
    return tiny_float_net(seed, dropout=0.2)  # dropout exercises the saved/restored RNG state


def _student(teacher: nn.Module) -> nn.Module:
    return tiny_student(teacher, weight_estimator="ede")


@pytest.fixture(scope="module")
def digits() -> tuple[Subset, Subset]:
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    return Subset(train, range(320)), Subset(test, range(160))


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_short_run_learns_above_chance_and_writes_outputs(digits, tmp_path: Path) -> None:
    train, val = digits
    teacher = _float_net()
    float_run = train_float(teacher, train, val, epochs=4, lr=2e-2, out_dir=tmp_path / "float",
                            **FAST)  # fmt: skip
    assert float_run.final_val_acc is not None and float_run.final_val_acc > 30.0
    assert "train_kd" not in float_run.history[0]
    student = _student(teacher)
    result = finetune(
        student, teacher, train, val, epochs=3, lr=1e-2, ce_weight=0.5, out_dir=tmp_path,
        **{**FAST, "plots": True},
    )  # fmt: skip
    losses = [r["train_loss"] for r in result.history]
    assert losses[-1] < losses[0]
    assert result.final_val_acc is not None and result.final_val_acc > 20.0  # chance is 10%
    assert result.best_val_acc == max(r["val_acc"] for r in result.history)
    student.train()
    scores = evaluate(student, val, batch_size=50)
    assert scores["acc"] == pytest.approx(result.final_val_acc)
    assert scores["loss"] == pytest.approx(result.history[-1]["val_loss"], rel=1e-5)
    assert scores["n"] == len(val) and student.training
    for name in ("last.pt", "best.pt", "metrics.json", "curves.png", "binary_sets.png"):
        assert (tmp_path / name).is_file(), name
    assert set(result.plots) == {"curves", "binary_sets"}
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["epochs_done"] == 3 and len(metrics["history"]) == 3
    assert {"train_kd", "train_ce", "val_acc", "val_loss", "train_img_per_s"} <= set(
        metrics["history"][-1]
    )
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 3 and state["step"] == 3 * (320 // 32)
    assert {"model", "optimizer", "scheduler", "rng", "history", "config"} <= set(state)
    assert not list(tmp_path.glob(".*.tmp"))  # no temp files left behind


class _ParentTrain(Callback):
    """Calls .train() on a parent of the teacher mid-run, as user code might."""

    def __init__(self, teacher: nn.Module) -> None:
        self.parent = nn.ModuleDict({"teacher": teacher})
        self.seen_training: list[bool] = []

    def on_step_end(self, state: LoopState) -> None:
        self.parent.train()
        self.seen_training.append(self.parent["teacher"].training)


def test_teacher_frozen_and_in_eval_mode(digits, tmp_path: Path) -> None:
    train, val = digits
    teacher = _float_net()
    student = _student(teacher)
    teacher.train()
    before = _params(teacher)  # includes BatchNorm running statistics
    spy = _ParentTrain(teacher)
    finetune(student, teacher, train, val, epochs=1, out_dir=tmp_path, callbacks=[spy], **FAST)
    assert spy.seen_training and not any(spy.seen_training)
    assert not teacher.training and not any(m.training for m in teacher.modules())
    assert all(not p.requires_grad for p in teacher.parameters())
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert "train" not in teacher.__dict__  # the eval pin is removed after the run


def test_teacher_from_student_attribute_or_clear_error(digits, tmp_path: Path) -> None:
    train, val = digits
    teacher = _float_net()
    student = _student(teacher)
    with pytest.raises(ValueError, match="teacher="):
        finetune(student, None, train, val, epochs=1, out_dir=tmp_path, **FAST)
    from autobin.model_info import FloatReference, ModelInfo, attach_info

    attach_info(student, ModelInfo("plain", None, None, None, FloatReference(teacher)))
    result = finetune(student, None, train, val, epochs=1, out_dir=tmp_path, **FAST)
    assert result.history[0]["train_kd"] >= 0
    assert not any(p.requires_grad for p in teacher.parameters())


class _Interrupt(Exception):
    pass


class _KillAt(Callback):
    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_step_end(self, state: LoopState) -> None:
        if state.epoch == self.epoch and state.batch_index == self.batch:
            raise _Interrupt


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_resume_after_interruption_equals_uninterrupted(digits, tmp_path, optimizer) -> None:
    train, val = digits
    options = {**FAST, "epochs": 2, "optimizer": optimizer, "lr": 1e-2, "weight_decay": 1e-4}
    teacher = _float_net()
    full = _student(teacher)
    ref = finetune(full, _float_net(), train, val, out_dir=tmp_path / "full", **options)

    killed = _student(_float_net())
    with pytest.raises(_Interrupt):
        finetune(killed, _float_net(), train, val, out_dir=tmp_path / "run",
                 callbacks=[_KillAt(epoch=1, batch=3)], **options)  # fmt: skip
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1

    resumed = _student(_float_net())  # a fresh process would rebuild the model like this
    out = finetune(resumed, _float_net(), train, val, out_dir=tmp_path / "run", resume=True,
                   **options)  # fmt: skip
    _assert_same_state(full, resumed)
    strip = ("train_time_s", "train_img_per_s")
    clean = [{k: v for k, v in r.items() if k not in strip} for r in ref.history]
    assert [{k: v for k, v in r.items() if k not in strip} for r in out.history] == clean
    final = load_checkpoint(tmp_path / "run" / "last.pt")
    assert final["epoch"] == 2
    ref_final = load_checkpoint(tmp_path / "full" / "last.pt")
    for key, value in ref_final["optimizer"]["state"].items():
        for name, tensor in value.items():
            assert torch.equal(torch.as_tensor(tensor), torch.as_tensor(
                final["optimizer"]["state"][key][name])), (key, name)  # fmt: skip


class _PoisonAt(Callback):
    """At the start of ``epoch``, make the model output NaN; remember the good state before."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.good: dict[str, torch.Tensor] = {}

    def on_epoch_end(self, state: LoopState) -> None:
        self.good = _params(state.model)

    def on_epoch_start(self, state: LoopState) -> None:
        if state.epoch == self.epoch:
            with torch.no_grad():
                state.model[-1].bias.fill_(float("nan"))


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(digits, tmp_path: Path) -> None:
    train, val = digits
    teacher = _float_net()
    student = _student(teacher)
    poison = _PoisonAt(epoch=1)
    with pytest.raises(NonFiniteLossError) as info:
        finetune(student, teacher, train, val, epochs=3, out_dir=tmp_path, callbacks=[poison],
                 **FAST)  # fmt: skip
    err = info.value
    assert (err.epoch, err.step) == (2, 320 // 32 + 1)
    message = str(err)
    assert "epoch 2" in message and "step 11" in message and "last.pt" in message
    assert err.checkpoint == tmp_path / "last.pt"
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 1
    for key, value in state["model"].items():
        assert torch.equal(value, poison.good[key]), key
        assert torch.isfinite(value.float()).all(), key
    fresh = _student(_float_net())
    fresh.load_state_dict(state["model"])


def test_non_finite_in_first_epoch_says_no_checkpoint(digits, tmp_path: Path) -> None:
    train, val = digits
    student = _student(_float_net())
    with pytest.raises(NonFiniteLossError, match="No checkpoint was written yet"):
        finetune(student, _float_net(), train, val, epochs=1, out_dir=tmp_path,
                 callbacks=[_PoisonAt(epoch=0)], **FAST)  # fmt: skip
    assert not (tmp_path / "last.pt").exists()


def test_data_order_depends_only_on_seed_and_epoch() -> None:
    from autobin.train.distributed import Ranks as _Dist
    from autobin.train.sampling import epoch_indices

    one = _Dist()
    assert epoch_indices(50, 3, 2, one) == epoch_indices(50, 3, 2, one)
    assert epoch_indices(50, 3, 2, one) != epoch_indices(50, 3, 1, one)
    assert epoch_indices(50, 3, 2, one) != epoch_indices(50, 4, 2, one)
    shards = [epoch_indices(50, 3, 2, _Dist(rank, 4)) for rank in range(4)]
    assert len({len(s) for s in shards}) == 1  # equal steps on every rank
    assert set().union(*shards) == set(range(50))
