"""Paths of ``finetune`` that CI's CPU runs too: feature distillation, bf16 and fp16 autocast
(fp16 with its GradScaler), and ``compile=True``.

The CUDA versions live in test_finetune_cuda.py (skipped without a GPU); these run the same
code on the CPU, where torch supports all of it.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from tiny_nets import tiny_float_net, tiny_student
from torch.utils.data import Subset

from autobin.data import load_dataset
from autobin.train import (
    Callback,
    Ranks,
    TrainWarning,
    finetune,
    load_checkpoint,
    normalized_mse,
)
from autobin.train.sampling import epoch_indices

FAST = {"progress": False, "plots": False, "batch_size": 32, "device": "cpu", "seed": 0}


@pytest.fixture(scope="module")
def digits() -> tuple[Subset, Subset]:
    return (
        Subset(load_dataset("digits", "train"), range(128)),
        Subset(load_dataset("digits", "test"), range(64)),
    )


class StepLosses(Callback):
    """The loss of every optimizer step."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_step_end(self, state) -> None:
        self.losses.append(state.loss)


def _first_batch(train: Subset) -> torch.Tensor:
    """The images of the first training batch the loop draws (seed 0, epoch 0, one process)."""
    order = epoch_indices(len(train), 0, 0, Ranks())[:32]
    return torch.stack([train[i][0] for i in order])


def _feature_loss(student, teacher, x: torch.Tensor, layer: str) -> float:
    """normalized_mse of ``layer``'s outputs: student in training mode, teacher frozen."""
    outputs = {}
    hooks = [
        dict(m.named_modules())[layer].register_forward_hook(
            lambda _m, _a, out, key=key: outputs.__setitem__(key, out)
        )
        for key, m in (("student", student), ("teacher", teacher))
    ]
    with torch.no_grad():
        student.train()(x)
        teacher.eval()(x)
    for hook in hooks:
        hook.remove()
    return float(normalized_mse(outputs["student"], outputs["teacher"]))


def test_feature_distillation_trains_the_student_towards_the_teachers_features(
    digits, tmp_path
) -> None:
    train, val = digits
    teacher = tiny_float_net()
    student = tiny_student(teacher)
    x = _first_batch(train)
    # the loop's first loss must be exactly this: the feature term alone, on the first batch
    expected = _feature_loss(copy.deepcopy(student), copy.deepcopy(teacher), x, "4")
    steps = StepLosses()
    config = {"kd_weight": 0.0, "ce_weight": 0.0, "feature_weight": 1.0, "feature_layers": ["4"],
              "lr": 1e-2}  # fmt: skip
    result = finetune(student, teacher, train, val, epochs=3, config=config,
                      out_dir=tmp_path, callbacks=[steps], **FAST)  # fmt: skip
    assert steps.losses[0] == pytest.approx(expected, rel=1e-5)
    history = result.history
    assert all("train_feature" in r and "train_kd" not in r for r in history)
    assert history[0]["train_feature"] == pytest.approx(history[0]["train_loss"], rel=1e-6)
    # trained on the feature term alone, the binary block's output moved towards the teacher's
    after = _feature_loss(student, teacher, x, "4")
    assert after < 0.8 * expected, (expected, after)


@pytest.mark.parametrize(
    ("precision", "dtype"), [("bf16", torch.bfloat16), ("fp16", torch.float16)]
)
def test_autocast_on_the_cpu_runs_the_student_in_half_precision(
    digits, tmp_path, precision, dtype
) -> None:
    train, val = digits
    teacher = tiny_float_net()
    student = tiny_student(teacher)
    seen: set[torch.dtype] = set()  # of the training forwards (those that record gradients)
    student[0].register_forward_hook(
        lambda _m, _a, out: seen.add(out.dtype) if torch.is_grad_enabled() else None
    )
    result = finetune(student, teacher, train, val, epochs=1, config={"precision": precision},
                      out_dir=tmp_path, **FAST)  # fmt: skip
    assert seen == {dtype}  # every training forward ran under autocast
    assert all(p.dtype == torch.float32 for p in student.parameters())  # master weights stay
    assert math.isfinite(result.history[0]["train_loss"])
    assert math.isfinite(result.history[0]["val_loss"])
    scaler = load_checkpoint(tmp_path / "last.pt")["scaler"]
    if precision == "bf16":
        assert scaler == {}  # no gradient scaling: bf16 has float32's range
        return
    # fp16: the GradScaler ran every step (4 steps of 32 of 128 items) without an overflow
    assert scaler["scale"] == 65536.0 and scaler["_growth_tracker"] == 4
    with pytest.warns(TrainWarning, match=r"different training config \(\['epochs'\]\)"):
        teacher = tiny_float_net()  # the first run left its teacher frozen (documented)
        finetune(tiny_student(teacher), teacher, train, val, epochs=2, resume=True,
                 config={"precision": "fp16"}, out_dir=tmp_path, **FAST)  # fmt: skip
    resumed = load_checkpoint(tmp_path / "last.pt")["scaler"]
    assert resumed["_growth_tracker"] == 8  # restored from the checkpoint, then 4 more steps


@pytest.mark.slow
def test_compiled_finetune_on_the_cpu_computes_what_eager_does(digits, tmp_path) -> None:
    train, val = Subset(digits[0], range(64)), digits[1]
    runs = {}
    for compile_ in (False, True):
        teacher = tiny_float_net()
        student = tiny_student(teacher)
        steps = StepLosses()
        config = {"compile": compile_, "lr": 1e-3}
        result = finetune(student, teacher, train, val, epochs=1, config=config,
                          out_dir=tmp_path / str(compile_), callbacks=[steps], **FAST)  # fmt: skip
        runs[compile_] = (student, steps.losses, result)
    eager, compiled = runs[False], runs[True]
    # the same first loss (up to the reordered sums of fused kernels)
    assert compiled[1][0] == pytest.approx(eager[1][0], rel=1e-3)
    assert len(compiled[1]) == len(eager[1]) == 2
    # the checkpoint holds the plain module's names (no torch.compile wrapper prefix)
    state = load_checkpoint(tmp_path / "True" / "last.pt")["model"]
    assert set(state) == set(eager[0].state_dict())
    fresh = tiny_student(tiny_float_net())
    fresh.load_state_dict(state)
    for (name, p), q in zip(compiled[0].named_parameters(), eager[0].parameters(), strict=True):
        # Adam moves a parameter by at most about lr a step, even on pure rounding noise (the
        # gradient of a conv bias before BatchNorm is 0 in exact arithmetic): 2 steps of 1e-3
        torch.testing.assert_close(p, q, rtol=0, atol=2.2e-3, msg=lambda m, name=name: name + m)
    assert compiled[2].final_val_acc == pytest.approx(eager[2].final_val_acc, abs=1.6)
